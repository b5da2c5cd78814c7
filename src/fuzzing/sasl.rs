//! The SASL exchange on hostile tokens: the server's side of PLAIN and SCRAM, and the SCRAM
//! client's parsing of server messages.

use std::sync::OnceLock;

use crate::security::sasl::{Authenticator, SaslMechanism, SaslProgress};
use crate::security::scram::{ScramClient, ScramCredential, ScramMechanism};
use crate::security::users::UserStore;

/// The password of the one user the fuzzed broker knows.
pub const PASSWORD: &str = "fuzz-secret";

/// A store with user "alice" for both SCRAM mechanisms; one iteration, so that a PLAIN check
/// costs the fuzzer nothing (the broker refuses fewer than 4096 when storing).
fn users() -> &'static UserStore {
    static USERS: OnceLock<UserStore> = OnceLock::new();
    USERS.get_or_init(|| {
        let mut users = UserStore::default();
        for mechanism in ScramMechanism::ALL {
            users.set(
                "alice",
                mechanism,
                ScramCredential::new(mechanism, PASSWORD, 1),
            );
        }
        users
    })
}

/// `data[0]` picks the mechanism, `data[1]` where the rest splits into two tokens, which are
/// fed to one server-side exchange in turn; the rest, whole, is also fed to a SCRAM client as
/// the server's first and final messages. Invariants: no panic, and an exchange that succeeds
/// names a user the store knows (a PLAIN one only with the right password).
pub fn sasl_exchange(data: &[u8]) {
    let [mechanism_pick, split_pick, rest @ ..] = data else {
        return;
    };
    let mechanism = SaslMechanism::ALL[usize::from(*mechanism_pick) % SaslMechanism::ALL.len()];
    let split = if rest.is_empty() {
        0
    } else {
        usize::from(*split_pick) % (rest.len() + 1)
    };
    let mut authenticator = Authenticator::new(mechanism);
    for token in [&rest[..split], &rest[split..]] {
        match authenticator.step(token, users()) {
            Err(_) => break,
            Ok(SaslProgress::Challenge(_)) => {}
            Ok(SaslProgress::Done { user, .. }) => {
                assert!(!users().credentials(&user).is_empty(), "{user} is unknown");
                break;
            }
            Ok(SaslProgress::CheckPassword(check)) => {
                if let Ok(SaslProgress::Done { user, .. }) = check.run() {
                    assert_eq!(user, "alice");
                    let text = String::from_utf8_lossy(token);
                    assert!(
                        text.ends_with(PASSWORD),
                        "PLAIN passed without the password"
                    );
                }
                break;
            }
        }
    }
    for scram in ScramMechanism::ALL {
        let (mut client, _) = ScramClient::start(scram, "alice", PASSWORD);
        if client.client_final(rest).is_ok() {
            let _ = client.verify_server_final(rest);
        }
    }
}
