//! "No room left" among I/O errors, told apart wherever bytes are written: the sandbox's
//! outputs and the store both turn it into a clear word instead of a failure.

/// ENOSPC (the disk is full) or EDQUOT (the operator's quota is).
pub fn is_no_room(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
