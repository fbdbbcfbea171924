//! DMF Interfaces: binding a Protocol Module to a Transport Module at run time
//! (dmf-upstream §2.11). Not yet implemented beyond the legacy Transport child
//! ([`Scope::transport_call`](super::Scope::transport_call)).
