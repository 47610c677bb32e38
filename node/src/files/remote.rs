//! The file endpoint on another device of the same owner.
//!
//! - `device`: the endpoint as its own process (`clawnet endpoint`): its own whitelist
//!   (layer 2, enforced there), journal, backups and audit chain, a device key the owner
//!   certified, and the calls it takes from its node only.
//! - `registry`: the node's side: which certified devices are connected, which folders each
//!   serves, and routing a directive (layer 1 already checked here) to the device that holds
//!   its paths.
//! - `certify`: the owner certifying, listing and revoking devices.
//! - `wire`: what the two say on `/clawnet/endpoint/1`, over the node's Noise-encrypted
//!   libp2p transport.

pub mod certify;
pub mod device;
pub mod registry;
pub mod wire;

pub use certify::{CertifyRequest, DeviceView};
pub use device::{DeviceEndpoint, EndpointSettings};
pub use registry::{OnlineDevice, RemoteEndpoints};
pub use wire::{CertificateCode, EndpointAnswer, EndpointCall, RemoteFailure};
