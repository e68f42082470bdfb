//! Mail storage: traits, the change feed, and the `memory` and `maildir` backends.
