//! Rundown protection with `EX_RUNDOWN_REF` semantics (being written; see issue 2).
