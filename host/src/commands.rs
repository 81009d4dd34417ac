//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod keygen;
pub mod serve;
