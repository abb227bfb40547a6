//! Atlassian Document Format (JIRA Cloud's rich text): to plain text, and the building blocks of
//! the comments this system posts (`texts::jira`).
//!
//! The original joined every text node with single spaces, which ran paragraphs and list items
//! together. Here block nodes end with a blank line, list items start with `- `, hard breaks are
//! new lines and mentions keep their visible text, so a prompt reads as the issue did.

use serde_json::{Value, json};

/// Deepest nesting walked; ADF from JIRA is a few levels deep, and a bound keeps a hostile
/// document from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// Plain text of an ADF document; a JSON string passes through and anything else is empty.
pub fn to_text(doc: &Value) -> String {
    match doc {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let mut out = String::new();
            walk(doc, &mut out, 0);
            let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
            // Fold runs of blank lines left by nested blocks.
            let mut text = String::new();
            let mut blank = 0;
            for line in trimmed {
                if line.is_empty() {
                    blank += 1;
                    if blank > 1 {
                        continue;
                    }
                } else {
                    blank = 0;
                }
                text.push_str(line);
                text.push('\n');
            }
            text.trim().to_owned()
        }
        _ => String::new(),
    }
}

fn walk(node: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let kind = node.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => {
            if let Some(t) = node.get("text").and_then(Value::as_str) {
                out.push_str(t);
            }
            return;
        }
        "hardBreak" => {
            out.push('\n');
            return;
        }
        "mention" | "emoji" | "status" | "date" | "inlineCard" => {
            let attrs = node.get("attrs");
            let text = attrs
                .and_then(|a| {
                    a.get("text")
                        .or_else(|| a.get("shortName"))
                        .or_else(|| a.get("url"))
                })
                .and_then(Value::as_str)
                .unwrap_or("");
            out.push_str(text);
            return;
        }
        "listItem" => out.push_str("- "),
        "codeBlock" => out.push_str("```\n"),
        _ => {}
    }
    if let Some(children) = node.get("content").and_then(Value::as_array) {
        for child in children {
            walk(child, out, depth + 1);
        }
    }
    match kind {
        "paragraph" | "heading" | "blockquote" | "panel" | "rule" | "table" => out.push_str("\n\n"),
        "codeBlock" => out.push_str("\n```\n\n"),
        "listItem" | "tableRow" if !out.ends_with('\n') => out.push('\n'),
        "tableCell" | "tableHeader" => out.push_str(" | "),
        _ => {}
    }
}

// Building blocks.
/// Plain text.
pub fn text(t: &str) -> Value {
    json!({ "type": "text", "text": t })
}

/// Bold text.
pub fn strong(t: &str) -> Value {
    json!({ "type": "text", "text": t, "marks": [{ "type": "strong" }] })
}

/// Italic text.
pub fn em(t: &str) -> Value {
    json!({ "type": "text", "text": t, "marks": [{ "type": "em" }] })
}

/// A link.
pub fn link(t: &str, href: &str) -> Value {
    json!({ "type": "text", "text": t, "marks": [{ "type": "link", "attrs": { "href": href } }] })
}

/// A paragraph of inline nodes.
pub fn paragraph(inline: Vec<Value>) -> Value {
    json!({ "type": "paragraph", "content": inline })
}

/// A bullet list, one item per entry of inline nodes.
pub fn bullets(items: Vec<Vec<Value>>) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|inline| json!({ "type": "listItem", "content": [paragraph(inline)] }))
        .collect();
    json!({ "type": "bulletList", "content": items })
}

/// A document of blocks.
pub fn doc(blocks: Vec<Value>) -> Value {
    json!({ "type": "doc", "version": 1, "content": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paragraphs_lists_and_mentions() {
        let doc = json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Add a login page."},
                {"type": "hardBreak"},
                {"type": "text", "text": "Ask "},
                {"type": "mention", "attrs": {"id": "1", "text": "@Dave"}}
            ]},
            {"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "email"}]}]},
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "password"}]}]}
            ]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Thanks"}]}
        ]});
        assert_eq!(
            to_text(&doc),
            "Add a login page.\nAsk @Dave\n\n- email\n\n- password\n\nThanks"
        );
    }

    #[test]
    fn strings_pass_and_others_are_empty() {
        assert_eq!(to_text(&json!("plain")), "plain");
        assert_eq!(to_text(&json!(null)), "");
        assert_eq!(to_text(&json!(3)), "");
    }

    #[test]
    fn deep_documents_do_not_overflow() {
        let mut doc = json!({"type": "text", "text": "x"});
        for _ in 0..200 {
            doc = json!({"type": "paragraph", "content": [doc]});
        }
        // Text below the depth bound is not reached; the walk returns instead of recursing on.
        assert_eq!(to_text(&doc), "");
    }
}
