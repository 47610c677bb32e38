//! The operating system's RNG as an infallible [`rand_core::CryptoRng`].

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// The operating system's random number generator.
///
/// Failing to read OS randomness leaves no safe way to continue, so this panics in that case
/// instead of returning an error every caller would have to propagate.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng(());

impl OsRng {
    /// A handle to the OS RNG.
    pub fn new() -> OsRng {
        OsRng(())
    }
}

impl TryRng for OsRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if let Err(err) = getrandom::fill(dst) {
            panic!("the operating system's random number generator failed: {err}");
        }
        Ok(())
    }
}

impl TryCryptoRng for OsRng {}

/// `N` fresh random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand_core::Rng::fill_bytes(&mut OsRng::new(), &mut bytes);
    bytes
}
