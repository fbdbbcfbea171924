//! # kmdf-sim — a user-mode KMDF (being written; see issue 3)
