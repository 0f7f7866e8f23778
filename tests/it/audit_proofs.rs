//! Inclusion proofs (docs/auditing.md, "Inclusion proofs"): one event proven part of a signed
//! checkpoint over HTTP, without any other event, and checked by the standalone verifier
//! (`docs/auditing/verify_proof.py`, which shares no code with payledger).

use payledger::audit_checkpoints::{load_signer, seal_and_export, AuditFiles};
use payledger_tests::{spawn_app, TestApp};
use serde_json::Value;

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.get_as(&app.auditor_key, path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Runs `verify_proof.py` on `proof` (and `event`); its exit code and output.
fn verify_with_python(proof: &Value, event: &Value, public_key: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("payledger-proof-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("proof.json"), proof.to_string()).unwrap();
    std::fs::write(dir.join("event.json"), event.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/auditing/verify_proof.py"
    );
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg("--proof")
        .arg(dir.join("proof.json"))
        .arg("--event")
        .arg(dir.join("event.json"))
        .arg("--public-key")
        .arg(public_key)
        .output()
        .expect("python3 runs (the CI image has it: .ci/run uses it)");
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn an_event_is_proven_part_of_a_signed_checkpoint_on_its_own_and_the_standalone_verifier_agrees(
) {
    let app = spawn_app().await;
    app.place_order("proof-1", 12_000).await;
    app.place_order("proof-2", 34_000).await;
    assert_eq!(
        app.confirm("proof-1", "pk_proof_1", 12_000).await.status(),
        200
    );

    // Nothing sealed yet (the server seals every 60 s in tests): no proof, a stable code.
    let (status, body) = get(&app, "/v1/audit/proofs/1").await;
    if status != 200 {
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("E_PROOF_UNAVAILABLE")),
            "{body}"
        );
    }
    let (status, body) = get(&app, "/v1/audit/proofs/999999").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E_POSITION_BEYOND_HEAD")),
        "{body}"
    );
    let (status, body) = get(&app, "/v1/audit/proofs/zero").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("position")),
        "{body}"
    );
    let status = app
        .get_as(&app.client_key, "/v1/audit/proofs/1")
        .await
        .status()
        .as_u16();
    assert_eq!(status, 403, "for auditors and admins");

    // Seal with the server's own key, as `payledger audit checkpoint` does.
    let directory = payledger_tests::checkpoint_directory(&app.db.name);
    let files = AuditFiles {
        key_file: directory.join("audit-signing-key"),
        export_file: directory.join("audit-checkpoints.jsonl"),
    };
    let signer = load_signer(&files, true).unwrap().unwrap();
    seal_and_export(&app.app_pool, &signer, &files.export_file)
        .await
        .unwrap();
    let public_key: String = signer
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let head = app.head_position().await;

    let (_, events) = get(&app, "/v1/events?limit=1000").await;
    for position in 1..=head {
        let (status, proof) = get(&app, &format!("/v1/audit/proofs/{position}")).await;
        assert_eq!(status, 200, "{proof}");
        assert!(proof["checkpoint"]["eventsRoot"].is_string(), "{proof}");
        let event = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["globalPosition"] == position)
            .unwrap();
        // Nothing of another event: no payload, no other stream's name.
        let text = proof.to_string();
        assert!(!text.contains("payload"), "{text}");
        for other in events["events"].as_array().unwrap() {
            if other["streamId"] != event["streamId"] {
                let name = other["streamId"].as_str().unwrap();
                assert!(!text.contains(name), "{name} in {text}");
            }
        }
        let (code, output) = verify_with_python(&proof, event, &public_key);
        assert_eq!(code, 0, "position {position}: {output}");
        assert!(output.starts_with("ok: event"), "{output}");

        // The same proof against a changed event, another key, or a forged path is refused.
        let mut changed = event.clone();
        changed["payload"]["amountMinor"] = 1.into();
        assert_eq!(verify_with_python(&proof, &changed, &public_key).0, 1);
        assert_eq!(verify_with_python(&proof, event, &"11".repeat(32)).0, 1);
        if let Some(first) = proof["path"].as_array().and_then(|p| p.first()).cloned() {
            let mut forged = proof.clone();
            let flipped = if first.as_str().unwrap().starts_with('0') {
                "1"
            } else {
                "0"
            };
            forged["path"][0] = format!("{flipped}{}", &first.as_str().unwrap()[1..]).into();
            let (code, output) = verify_with_python(&forged, event, &public_key);
            assert_eq!(code, 1, "{output}");
            assert!(output.contains("eventsRoot"), "{output}");
        }
    }
}
