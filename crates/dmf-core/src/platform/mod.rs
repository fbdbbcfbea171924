//! The platform contract: the only code in DMF that touches the operating system (being written).
