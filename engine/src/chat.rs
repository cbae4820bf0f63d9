//! Chat formatting: a system prompt, earlier turns and the new input, laid out the way
//! the model was trained to read them. `fai-tiny` uses the plain template below; real
//! models bring their own in their GGUF metadata (`tokenizer.chat_template`).

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One earlier turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// The template `fai-tiny` is written with (stored in its GGUF metadata).
pub const PLAIN_TEMPLATE: &str = "<|system|>{system}<|user|>{user}<|assistant|>{assistant}<|end|>";

/// Lays out a prompt with the plain template, ending where the assistant's answer begins.
pub fn format_plain(system: &str, context: &[Turn], input: &str) -> String {
    let mut out = String::new();
    if !system.is_empty() {
        out.push_str("<|system|>\n");
        out.push_str(system);
        out.push('\n');
    }
    for turn in context {
        out.push_str(match turn.role {
            Role::User => "<|user|>\n",
            Role::Assistant => "<|assistant|>\n",
        });
        out.push_str(&turn.text);
        out.push('\n');
    }
    out.push_str("<|user|>\n");
    out.push_str(input);
    out.push_str("\n<|assistant|>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_holds_every_part_in_order() {
        let p = format_plain(
            "be brief",
            &[
                Turn {
                    role: Role::User,
                    text: "hi".into(),
                },
                Turn {
                    role: Role::Assistant,
                    text: "hello".into(),
                },
            ],
            "2+2?",
        );
        assert_eq!(
            p,
            "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\nhello\n<|user|>\n2+2?\n<|assistant|>\n"
        );
        assert_eq!(format_plain("", &[], "x"), "<|user|>\nx\n<|assistant|>\n");
    }
}
