//! The control protocol from both ends, on arbitrary bytes (design.md
//! §Control): the daemon's request decoder must accept or refuse every line
//! without panicking, and what it accepts must survive its own encoding;
//! the client must render any answer a daemon could send, for every command,
//! without panicking; the text helpers that clean client-supplied and
//! guest-supplied strings must take anything.
#![no_main]

use isodhcp::control::proto::{redact_mac, redact_text};
use isodhcp::control::server::decode_request;
use isodhcp::control::{Command, Response, render};
use isodhcp::text::escape_for_terminal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok(req) => {
            let line = serde_json::to_vec(&req).expect("a request serialises");
            assert_eq!(decode_request(&line).ok(), Some(req), "round trip");
        }
        Err(why) => assert!(!why.is_empty(), "a refusal must say why"),
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        for cmd in commands() {
            let _ = render::text(&cmd, &resp);
        }
    }
    let s = String::from_utf8_lossy(data);
    let _ = redact_text(&s);
    let _ = redact_mac(&s);
    let _ = escape_for_terminal(&s);
});

/// One of every command, as the client would have sent it.
fn commands() -> [Command; 7] {
    [
        Command::Status,
        Command::Config,
        Command::Dump {
            sections: vec!["leases".into(), "xdp".into()],
        },
        Command::Show { key: "x".into() },
        Command::Verify,
        Command::Block {
            mac: "02:00:00:00:00:01".into(),
            seconds: Some(60),
        },
        Command::Unblock {
            mac: "02:00:00:00:00:01".into(),
        },
    ]
}
