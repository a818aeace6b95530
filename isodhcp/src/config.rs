//! Settings shared by the command line and the layers below it. They live
//! here, not in `cli`, so that `system` can use them without importing the
//! command line (layers only import downwards).

use clap::ValueEnum;

/// `--isolation`: whether client-to-client traffic is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    On,
    Off,
    System,
}

/// `--xdp`: how the XDP program is attached, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpMode {
    Auto,
    Native,
    Generic,
    Off,
}
