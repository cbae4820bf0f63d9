//! Chat formatting: a system prompt, earlier turns and the new input, laid out the way the
//! model was trained to read them, by the model's own Jinja chat template
//! (`tokenizer.chat_template` in its GGUF metadata), rendered with minijinja and Python's
//! string methods.
//!
//! The template sees `messages` (`role` = system, user or assistant; `content`),
//! `add_generation_prompt` = true, `bos_token` and `eos_token`, and the functions
//! `raise_exception(msg)` and `strftime_now(fmt)`. Every node must render the same prompt
//! for the same request, so `strftime_now` answers a fixed date ([`TEMPLATE_DATE`]), not
//! the clock. A model without a template gets [`PLAIN_TEMPLATE`], which `fai-tiny` uses.

use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::error::{EngineError, Result};

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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

/// The template of `fai-tiny` and of models that bring none: `<|role|>`, a newline, the
/// text, a newline; the prompt ends with `<|assistant|>` and a newline.
pub const PLAIN_TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// The date `strftime_now` gives templates ("26 Jul 2024" style formats work on it).
pub const TEMPLATE_DATE: (i32, u32, u32) = (2026, 1, 1);

/// Bound on template work (minijinja fuel), far above what real templates use for
/// conversations that fit a context window.
const FUEL: u64 = 50_000_000;

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatTemplate")
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    let (y, m, d) = TEMPLATE_DATE;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .get(m.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format
        .replace("%d", &format!("{d:02}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%Y", &y.to_string())
        .replace("%b", month)
}

impl ChatTemplate {
    /// Compiles `source`; an empty source means [`PLAIN_TEMPLATE`].
    pub fn new(source: &str) -> Result<Self> {
        let source = if source.trim().is_empty() {
            PLAIN_TEMPLATE
        } else {
            source
        };
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.set_fuel(Some(FUEL));
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(ChatTemplate { env })
    }

    /// The prompt for `input` after `system` (left out when empty) and `context`, ending
    /// where the assistant's answer begins.
    pub fn render(
        &self,
        system: &str,
        context: &[Turn],
        input: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let mut messages = Vec::with_capacity(context.len() + 2);
        if !system.is_empty() {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        for turn in context {
            messages.push(Message {
                role: match turn.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                },
                content: &turn.text,
            });
        }
        messages.push(Message {
            role: "user",
            content: input,
        });
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => bos_token,
                eos_token => eos_token,
            })
            .map_err(|e| EngineError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns() -> Vec<Turn> {
        vec![
            Turn {
                role: Role::User,
                text: "hi".into(),
            },
            Turn {
                role: Role::Assistant,
                text: "hello".into(),
            },
        ]
    }

    #[test]
    fn the_plain_template_holds_every_part_in_order() {
        let t = ChatTemplate::new(PLAIN_TEMPLATE).unwrap();
        assert_eq!(
            t.render("be brief", &turns(), "2+2?", "", "").unwrap(),
            "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\nhello\n<|user|>\n2+2?\n<|assistant|>\n"
        );
        assert_eq!(
            t.render("", &[], "x", "", "").unwrap(),
            "<|user|>\nx\n<|assistant|>\n"
        );
        // No template means the plain one.
        assert_eq!(
            ChatTemplate::new("")
                .unwrap()
                .render("", &[], "x", "", "")
                .unwrap(),
            "<|user|>\nx\n<|assistant|>\n"
        );
    }

    /// A ChatML-style template as Qwen2 models ship it, with Python string methods.
    #[test]
    fn a_chatml_template_with_python_methods_renders() {
        let src = "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content.strip() + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}";
        let t = ChatTemplate::new(src).unwrap();
        assert_eq!(
            t.render("sys", &[], "  q  ", "", "").unwrap(),
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    /// A Llama-2-style template: BOS text, alternation enforced with raise_exception.
    #[test]
    fn a_template_can_refuse_a_conversation() {
        let src = "{{ bos_token }}{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]{% else %} {{ m.content }}{{ eos_token }}{% endif %}{% endfor %}";
        let t = ChatTemplate::new(src).unwrap();
        assert_eq!(
            t.render("", &turns(), "more", "<s>", "</s>").unwrap(),
            "<s>[INST] hi [/INST] hello</s>[INST] more [/INST]"
        );
        let err = t.render("sys", &[], "x", "<s>", "</s>").unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn a_broken_template_is_a_clear_error_and_dates_are_fixed() {
        let err = ChatTemplate::new("{% for m in messages %}").unwrap_err();
        assert!(err.to_string().starts_with("chat template:"), "{err}");
        let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}").unwrap();
        assert_eq!(t.render("", &[], "", "", "").unwrap(), "01 Jan 2026");
    }
}
