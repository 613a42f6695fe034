//! Asks the kernel whether Landlock is available and which ABI it speaks.
//! nono refuses to run a program when Landlock is missing, so a node
//! without it would fail every sandboxed container: check at startup.

/// `LANDLOCK_CREATE_RULESET_VERSION`: return the ABI version instead of a ruleset.
const CREATE_RULESET_VERSION: libc::c_uint = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock is not built into this kernel (landlock_create_ruleset: ENOSYS)")]
    NotBuilt,
    #[error(
        "Landlock is built in but disabled at boot (EOPNOTSUPP); add \"landlock\" to the \
         kernel's lsm= boot parameter"
    )]
    Disabled,
    #[error("landlock_create_ruleset failed with errno {0}")]
    Other(i32),
}

/// The Landlock ABI version of the running kernel.
pub fn abi_version() -> Result<u32, LandlockError> {
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the
    // kernel reads no memory and returns a number or an error.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    classify(ret, errno)
}

/// Maps the syscall's return value and errno to the result.
pub fn classify(ret: libc::c_long, errno: i32) -> Result<u32, LandlockError> {
    if ret >= 1 {
        return u32::try_from(ret).map_err(|_| LandlockError::Other(0));
    }
    Err(match errno {
        libc::ENOSYS => LandlockError::NotBuilt,
        libc::EOPNOTSUPP => LandlockError::Disabled,
        e => LandlockError::Other(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classification() {
        assert_eq!(classify(7, 0), Ok(7));
        assert_eq!(classify(-1, libc::ENOSYS), Err(LandlockError::NotBuilt));
        assert_eq!(classify(-1, libc::EOPNOTSUPP), Err(LandlockError::Disabled));
        assert_eq!(
            classify(-1, libc::EINVAL),
            Err(LandlockError::Other(libc::EINVAL))
        );
    }

    #[test]
    fn this_kernel_answers() {
        // Development and CI machines run a Landlock-enabled kernel (6.18).
        let abi = abi_version().expect("Landlock on the test machine");
        assert!(abi >= 1);
    }
}
