use payledger_webhooks::Priority;

#[test]
fn priorities_travel_as_lowercase_words() {
    let all = [
        (Priority::Urgent, "\"urgent\""),
        (Priority::Important, "\"important\""),
        (Priority::Normal, "\"normal\""),
        (Priority::Info, "\"info\""),
    ];
    for (priority, json) in all {
        assert_eq!(serde_json::to_string(&priority).expect("serialises"), json);
        assert_eq!(
            serde_json::from_str::<Priority>(json).expect("parses"),
            priority
        );
    }
}

#[test]
fn unknown_or_differently_cased_priorities_are_refused() {
    for json in ["\"critical\"", "\"Urgent\"", "\"URGENT\"", "1"] {
        assert!(serde_json::from_str::<Priority>(json).is_err(), "{json}");
    }
}
