//! The owner's other devices that run a file endpoint for this node: the certificate the owner
//! signed for each, and whether it was revoked. Few and small, so they live in one meta entry.

use clawnet_crypto::{DeviceCert, Signed, WireFormat, encoding};
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::{META, META_ENDPOINT_DEVICES};
use crate::view::{ReadView, Txn, decode_value};

/// Most endpoint devices one node knows.
pub const MAX_ENDPOINT_DEVICES: usize = 64;

/// A device certified to run a file endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDevice {
    /// The owner-signed certificate of its key.
    pub certificate: Signed<DeviceCert>,
    /// Whether the owner took it back (a revoked device is refused, and stays listed so its
    /// name is not reused by mistake).
    pub revoked: bool,
}

/// Every endpoint device, in the order certified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EndpointDevices {
    devices: Vec<EndpointDevice>,
}

impl WireFormat for EndpointDevices {
    const NAME: &'static str = "endpoint devices";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = MAX_ENDPOINT_DEVICES * 640;
}

impl ReadView {
    /// The endpoint devices the owner certified, oldest first.
    pub fn endpoint_devices(&self) -> Result<Vec<EndpointDevice>, StoreError> {
        let meta = self.tx.open_table(META).ctx("reading the endpoint devices")?;
        let value = meta.get(META_ENDPOINT_DEVICES).ctx("reading the endpoint devices")?;
        let devices: Option<EndpointDevices> = value.map(|value| decode_value(value.value())).transpose()?;
        Ok(devices.unwrap_or_default().devices)
    }
}

impl Txn<'_> {
    /// Replaces the endpoint devices.
    pub fn put_endpoint_devices(&mut self, devices: &[EndpointDevice]) -> Result<(), StoreError> {
        let mut meta = self.write_table(META).ctx("writing the endpoint devices")?;
        let value = EndpointDevices { devices: devices.to_vec() };
        meta.insert(META_ENDPOINT_DEVICES, encoding::encode(&value).as_slice()).ctx("writing the endpoint devices")?;
        Ok(())
    }
}
