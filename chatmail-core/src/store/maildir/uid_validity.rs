//! UIDVALIDITY values: new ones never handed out before for this `mailboxes_dir` (also
//! across restarts), and values taken over from Dovecot reserved so that no later one
//! repeats them.

use std::io;
use std::path::Path;

use super::files::write_replace;
use super::inner::{now_secs, Inner, IssuedUidValidity};
use crate::store::error::StoreError;
use crate::store::lock::lock;
use crate::types::UidValidity;

/// The file in `mailboxes_dir` that reserves UIDVALIDITY values across restarts (its name
/// has no `@`, so the expiry does not take it for an account).
pub(crate) const UID_VALIDITY_FILE: &str = "chatmail-uidvalidity";

/// How many UIDVALIDITY values one write of [`UID_VALIDITY_FILE`] reserves.
const UID_VALIDITY_BLOCK: u32 = 1024;

/// How far ahead of the clock a UIDVALIDITY taken from Dovecot may be (Dovecot's are
/// creation times, or one more than the last it gave).
const MAX_ADOPTED_UID_VALIDITY_AHEAD: u32 = 30 * 24 * 3600;

/// The end of the block of values reserved on disk by an earlier run (0 if none).
pub(super) fn read_reserved(root: &Path) -> Result<u32, StoreError> {
    match std::fs::read_to_string(root.join(UID_VALIDITY_FILE)) {
        Ok(text) => text.trim().parse().map_err(|_| {
            StoreError::Corrupt(format!("{UID_VALIDITY_FILE} holds {text:?}, not a number"))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::io(format!("reading {UID_VALIDITY_FILE}"), e)),
    }
}

impl Inner {
    /// A UIDVALIDITY never handed out before for this `mailboxes_dir`: the current
    /// time, or one more than the last if that is not later. Values are reserved in
    /// blocks in [`UID_VALIDITY_FILE`], so a restart (or a clock that went back) cannot
    /// hand out one again: a mailbox deleted and created again always gets a new one.
    pub(super) fn new_uid_validity(&self) -> Result<UidValidity, StoreError> {
        let mut issued = lock(&self.uid_validity);
        let now = u32::try_from(now_secs()).unwrap_or(u32::MAX);
        let next = now.max(issued.last.saturating_add(1));
        self.reserve_uid_validity(&mut issued, next)?;
        Ok(UidValidity(next))
    }

    /// Takes on a mailbox's UIDVALIDITY from Dovecot: reserves it in
    /// [`UID_VALIDITY_FILE`] so that [`Inner::new_uid_validity`] only hands out later
    /// values from now on, even after a restart. `false` (nothing reserved) for a value
    /// so far ahead of the clock that the values after it could run out.
    pub(super) fn adopt_uid_validity(&self, value: u32) -> Result<bool, StoreError> {
        let now = u32::try_from(now_secs()).unwrap_or(u32::MAX);
        if value == 0 || value > now.saturating_add(MAX_ADOPTED_UID_VALIDITY_AHEAD) {
            return Ok(false);
        }
        let mut issued = lock(&self.uid_validity);
        self.reserve_uid_validity(&mut issued, value)?;
        Ok(true)
    }

    /// Records `value` as used, first extending the reservation on disk if it does not
    /// cover `value` yet.
    pub(super) fn reserve_uid_validity(
        &self,
        issued: &mut IssuedUidValidity,
        value: u32,
    ) -> Result<(), StoreError> {
        if value >= issued.reserved_until {
            let reserved_until = value.saturating_add(UID_VALIDITY_BLOCK);
            write_replace(
                &self.root,
                UID_VALIDITY_FILE,
                format!("{reserved_until}\n").as_bytes(),
            )
            .map_err(|e| StoreError::io("reserving UIDVALIDITY values", e))?;
            issued.reserved_until = reserved_until;
        }
        issued.last = issued.last.max(value);
        Ok(())
    }
}
