//! Tests of templates: variables, undefined values, JSON templates, marked output.
use super::*;
use serde_json::json;

fn request() -> EndpointRequest {
    let mut req = EndpointRequest {
        task_id: "t-1".into(),
        topic: "invoice".into(),
        activity_id: "Activity_1".into(),
        process_instance_id: "pi-9".into(),
        business_key: Some("order-42".into()),
        ..Default::default()
    };
    req.variables.insert("amount".into(), json!(12.5));
    req.variables.insert("count".into(), json!(3));
    req.variables.insert("items".into(), json!(["a", "b"]));
    req.variables
        .insert("customer".into(), json!({"name": "Ada", "vip": true}));
    req.variables.insert("task".into(), json!("shadowed"));
    req.properties
        .insert("pde.prompt".into(), "Summarise {{ x }}".into());
    req
}

fn render(source: &str, req: &EndpointRequest) -> Result<String, TemplateError> {
    Template::compile("test", source)?.render(&TemplateContext::new(req))
}

#[test]
fn variables_are_at_top_level_and_in_the_map() {
    let req = request();
    assert_eq!(
        render(
            "{{ customer.name }} {{ variables.count }} {{ items | join(',') }}",
            &req
        )
        .unwrap(),
        "Ada 3 a,b"
    );
    // `tojson` (minijinja feature `json`) serialises a variable for JSON bodies and prompts.
    let json_text = render("{{ customer | tojson }}", &req).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"name": "Ada", "vip": true})
    );
}

#[test]
fn properties_business_key_and_task_are_available() {
    let req = request();
    let out = render(
        "{{ properties['pde.prompt'] }}|{{ business_key }}|{{ task.id }} {{ task.topic }} \
         {{ task.activity_id }} {{ task.process_instance_id }}|{{ variables.task }}",
        &req,
    )
    .unwrap();
    assert_eq!(
        out,
        "Summarise {{ x }}|order-42|t-1 invoice Activity_1 pi-9|shadowed"
    );
}

#[test]
fn an_undefined_variable_is_an_error_naming_it() {
    let err = render("Hello {{ nmae }}", &request()).unwrap_err();
    assert!(matches!(err, TemplateError::Render { .. }));
    let text = err.to_string();
    assert!(text.contains("`nmae`"), "{text}");
    assert!(text.contains("`test`"), "{text}");
}

#[test]
fn a_missing_business_key_is_undefined_but_defaults_work() {
    let mut req = request();
    req.business_key = None;
    assert!(render("{{ business_key }}", &req).is_err());
    assert_eq!(
        render("{{ business_key | default('-') }}", &req).unwrap(),
        "-"
    );
    assert_eq!(
        render("{% if business_key %}yes{% else %}no{% endif %}", &req).unwrap(),
        "no"
    );
}

#[test]
fn a_syntax_error_names_the_template() {
    let err = Template::compile("endpoints.crm.url", "{{ unclosed").unwrap_err();
    assert!(matches!(err, TemplateError::Compile { .. }));
    assert!(err.to_string().contains("endpoints.crm.url"), "{err}");
}

#[test]
fn json_template_keeps_types_of_whole_expressions() {
    let body = json!({
        "amount": "{{ amount }}",
        "count": "{{count}}",
        "items": "{{ items }}",
        "customer": "{{ customer }}",
        "label": "Order {{ business_key }} x{{ count }}",
        "fixed": [1, true, null, "plain"],
        "nested": {"first": "{{ items[0] }}"},
    });
    let tpl = JsonTemplate::compile("body", &body).unwrap();
    let out = tpl.render(&TemplateContext::new(&request())).unwrap();
    assert_eq!(
        out,
        json!({
            "amount": 12.5,
            "count": 3,
            "items": ["a", "b"],
            "customer": {"name": "Ada", "vip": true},
            "label": "Order order-42 x3",
            "fixed": [1, true, null, "plain"],
            "nested": {"first": "a"},
        })
    );
}

#[test]
fn json_template_undefined_names_path_and_expression() {
    let tpl = JsonTemplate::compile("body", &json!({"a": ["{{ missing }}"]})).unwrap();
    let err = tpl.render(&TemplateContext::new(&request())).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("body.a[0]") && text.contains("`missing`"),
        "{text}"
    );
}

#[test]
fn two_expressions_in_one_string_render_as_text() {
    let tpl = JsonTemplate::compile("b", &json!("{{ count }}{{ count }}")).unwrap();
    let out = tpl.render(&TemplateContext::new(&request())).unwrap();
    assert_eq!(out, json!("33"));
}

#[test]
fn marked_templates_keep_template_text_and_values_apart() {
    let tpl = MarkedTemplate::compile(
        "url",
        "https://x/{{ customer.name }}?q={{ items | join(',') }}&r={{ 'a/b' | safe }}",
    )
    .unwrap();
    assert_eq!(tpl.variables(), ["customer", "items"]);
    let pieces = tpl.render(&TemplateContext::new(&request())).unwrap();
    let value = |t: &str, safe| Piece::Value {
        text: t.into(),
        safe,
    };
    assert_eq!(
        pieces,
        [
            Piece::Text("https://x/".into()),
            value("Ada", false),
            Piece::Text("?q=".into()),
            value("a,b", false),
            Piece::Text("&r=".into()),
            value("a/b", true),
        ]
    );
    assert_eq!(joined(&pieces), "https://x/Ada?q=a,b&r=a/b");
}

#[test]
fn a_value_cannot_forge_marks() {
    let mut req = request();
    req.variables
        .insert("evil".into(), json!("a\u{E002}?x=1\u{E000}b"));
    let tpl = MarkedTemplate::compile("u", "p{{ evil }}").unwrap();
    let pieces = tpl.render(&TemplateContext::new(&req)).unwrap();
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[1].text(), "a\u{FFFD}?x=1\u{FFFD}b");
    assert!(MarkedTemplate::compile("u", "x\u{E000}").is_err());
    // Captured output printed again is one value.
    let tpl = MarkedTemplate::compile("u", "{% set y %}[{{ count }}]{% endset %}{{ y }}").unwrap();
    let pieces = tpl.render(&TemplateContext::new(&req)).unwrap();
    assert!(matches!(&pieces[..], [Piece::Value { .. }]), "{pieces:?}");
}

#[test]
fn tojson_of_an_undefined_variable_is_an_error_naming_it() {
    // Before: `null`, silently (a misspelt variable sent null in a JSON body).
    let err = render("{{ custmer | tojson }}", &request()).unwrap_err();
    assert!(err.to_string().contains("`custmer` is undefined"), "{err}");
    assert_eq!(render("{{ count | tojson }}", &request()).unwrap(), "3");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value a process variable can hold, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            "[{}%#\u{E000}-\u{E002}a-z ]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn rendering_arbitrary_variables_never_panics(
            a in json_value(), b in json_value()
        ) {
            let mut req = request();
            req.variables.insert("a".into(), a);
            req.variables.insert("b".into(), b);
            let ctx = TemplateContext::new(&req);
            for source in [
                "{{ a }}-{{ b }}",
                "{{ a | tojson }}",
                "{{ a.x }}{{ b[0] }}",
                "{% for i in a %}{{ i }}{% endfor %}",
                "{{ a ~ b }}",
                "{{ a | default('x') | upper }}",
            ] {
                let _ = Template::compile("t", source).unwrap().render(&ctx);
                let _ = MarkedTemplate::compile("t", source).unwrap().render(&ctx);
            }
            let body = JsonTemplate::compile(
                "body",
                &json!({"a": "{{ a }}", "both": ["{{ b }}", "x{{ a }}"]}),
            )
            .unwrap();
            let _ = body.render(&ctx);
        }
    }
}
