//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod keygen;
pub mod policy;
pub mod serve;
