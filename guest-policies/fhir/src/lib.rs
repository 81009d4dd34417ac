//! FHIR R4 (4.0.1) facts shared by the ehrgate gateway and the policy sdk: the tables that
//! decide which resources and search parameters belong to a patient, and the one reading of
//! reference strings. The gateway fills `request.patients` with these and policies judge
//! with the same code, so the two cannot disagree; the sdk re-exports it as
//! `ehrgate_sdk::fhir`.

pub mod reference;
pub mod search;
mod tables;

pub use tables::*;
