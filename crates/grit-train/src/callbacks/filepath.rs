//! File path templates with placeholders, as ModelCheckpoint takes them.
//!
//! A placeholder is `{name}` or `{name:spec}`, and [`super::ModelCheckpoint`] documents the
//! specs.

use std::fmt::Write;

/// A parsed file path template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FilepathTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Placeholder {
        name: String,
        /// The spec as written, for messages.
        spec_text: String,
        spec: Spec,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Spec {
    Plain,
    Integer { width: usize, zero_pad: bool },
    Fixed { decimals: usize },
    Scientific { decimals: usize },
}

/// A value to put in a placeholder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldValue {
    Integer(usize),
    Float(f64),
}

const SUPPORTED_SPECS: &str = "`02` or `02d` (zero-padded integer), `3` or `3d` (space-padded \
                               integer), `.4` or `.4f` (fixed decimals), `.3e` (scientific)";

impl FilepathTemplate {
    /// Parses `template`, returning a message naming the problem on error.
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => {
                    return Err(format!(
                        "`{template}` has a `}}` without a matching `{{`. Write `}}}}` for a \
                         literal brace"
                    ));
                }
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "`{template}` has a `{{` without a matching `}}`. Write \
                                     `{{{{` for a literal brace"
                                ));
                            }
                            Some(c) => field.push(c),
                        }
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(parse_placeholder(&field)?);
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(FilepathTemplate { parts })
    }

    /// Returns the placeholders' names in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Checks that integer specs are used only for the integer placeholders `integer_names`.
    pub(crate) fn check_specs(&self, integer_names: &[&str]) -> Result<(), String> {
        for part in &self.parts {
            if let Part::Placeholder {
                name,
                spec_text,
                spec: Spec::Integer { .. },
            } = part
            {
                if !integer_names.contains(&name.as_str()) {
                    return Err(format!(
                        "placeholder `{{{name}:{spec_text}}}` formats an integer, but `{name}` \
                         is a decimal value. Use a spec such as `.4f`"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Fills in the placeholders, returning the first name that `value` has no value for.
    pub(crate) fn format(
        &self,
        value: impl Fn(&str) -> Option<FieldValue>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder { name, spec, .. } => {
                    let value = value(name).ok_or_else(|| name.clone())?;
                    write_value(&mut out, value, *spec);
                }
            }
        }
        Ok(out)
    }
}

fn parse_placeholder(field: &str) -> Result<Part, String> {
    let (name, spec_text) = match field.split_once(':') {
        Some((name, spec)) => (name, spec),
        None => (field, ""),
    };
    if name.is_empty() {
        return Err(format!(
            "placeholder `{{{field}}}` has no name. Name a key, as in `{{epoch:02d}}`"
        ));
    }
    let spec = parse_spec(spec_text).ok_or_else(|| {
        format!(
            "placeholder `{{{field}}}` has the format spec `{spec_text}`, which is not \
             supported. Supported specs: {SUPPORTED_SPECS}"
        )
    })?;
    Ok(Part::Placeholder {
        name: name.to_string(),
        spec_text: spec_text.to_string(),
        spec,
    })
}

fn parse_spec(spec: &str) -> Option<Spec> {
    if spec.is_empty() {
        return Some(Spec::Plain);
    }
    if let Some(precision) = spec.strip_prefix('.') {
        let (digits, scientific) = match precision.strip_suffix('e') {
            Some(digits) => (digits, true),
            None => (precision.strip_suffix('f').unwrap_or(precision), false),
        };
        let decimals = parse_digits(digits)?;
        return Some(if scientific {
            Spec::Scientific { decimals }
        } else {
            Spec::Fixed { decimals }
        });
    }
    let digits = spec.strip_suffix('d').unwrap_or(spec);
    if digits.is_empty() {
        return Some(Spec::Integer {
            width: 0,
            zero_pad: false,
        });
    }
    Some(Spec::Integer {
        width: parse_digits(digits)?,
        zero_pad: digits.starts_with('0'),
    })
}

fn parse_digits(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn write_value(out: &mut String, value: FieldValue, spec: Spec) {
    let number = match value {
        FieldValue::Integer(integer) => match spec {
            Spec::Plain => {
                let _ = write!(out, "{integer}");
                return;
            }
            Spec::Integer { width, zero_pad } => {
                if zero_pad {
                    let _ = write!(out, "{integer:0width$}");
                } else {
                    let _ = write!(out, "{integer:width$}");
                }
                return;
            }
            _ => integer as f64,
        },
        FieldValue::Float(number) => number,
    };
    if !number.is_finite() {
        out.push_str(if number.is_nan() {
            "nan"
        } else if number > 0.0 {
            "inf"
        } else {
            "-inf"
        });
        return;
    }
    match spec {
        Spec::Fixed { decimals } => {
            let _ = write!(out, "{number:.decimals$}");
        }
        Spec::Scientific { decimals } => {
            let rust = format!("{number:.decimals$e}");
            let (mantissa, exponent) = rust.split_once('e').expect("`e` formatting has an `e`");
            let exponent: i32 = exponent.parse().expect("the exponent is an integer");
            let sign = if exponent < 0 { '-' } else { '+' };
            let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.abs());
        }
        // Integer specs on decimal values are rejected by `check_specs` before training.
        Spec::Plain | Spec::Integer { .. } => {
            let _ = write!(out, "{number}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(template: &str, epoch: usize, val_loss: f64) -> String {
        FilepathTemplate::parse(template)
            .unwrap()
            .format(|name| match name {
                "epoch" => Some(FieldValue::Integer(epoch)),
                "val_loss" => Some(FieldValue::Float(val_loss)),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn keras_style_specs() {
        let cases = [
            ("ckpt-{epoch:02d}.safetensors", "ckpt-03.safetensors"),
            ("ckpt-{epoch:02}.safetensors", "ckpt-03.safetensors"),
            ("ckpt-{epoch:3d}.safetensors", "ckpt-  3.safetensors"),
            ("ckpt-{epoch}.safetensors", "ckpt-3.safetensors"),
            ("{val_loss:.2f}.safetensors", "0.01.safetensors"),
            ("{val_loss:.4}.safetensors", "0.0123.safetensors"),
            ("{val_loss:.3e}.safetensors", "1.235e-02.safetensors"),
            ("{val_loss}.safetensors", "0.012345.safetensors"),
            ("{epoch:.1f}.safetensors", "3.0.safetensors"),
            ("{epoch:.2e}.safetensors", "3.00e+00.safetensors"),
            ("{{x}}-{epoch}.safetensors", "{x}-3.safetensors"),
            ("plain.safetensors", "plain.safetensors"),
        ];
        for (template, expected) in cases {
            assert_eq!(
                format(template, 3, 0.012345),
                expected,
                "template {template}"
            );
        }
    }

    #[test]
    fn large_exponents_and_non_finite_values() {
        assert_eq!(format("{val_loss:.1e}", 1, 1.5e123), "1.5e+123");
        assert_eq!(format("{val_loss:.4f}", 1, f64::NAN), "nan");
        assert_eq!(format("{val_loss:.4f}", 1, f64::INFINITY), "inf");
        assert_eq!(format("{val_loss}", 1, f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn placeholders_are_listed_in_order() {
        let template = FilepathTemplate::parse("{epoch:02}-{val_loss:.3f}-{{batch}}").unwrap();
        assert_eq!(
            template.names().collect::<Vec<_>>(),
            vec!["epoch", "val_loss"]
        );
    }

    #[test]
    fn malformed_templates_are_explained() {
        let cases = [
            ("ckpt-{epoch", "without a matching `}`"),
            ("ckpt-epoch}", "without a matching `{`"),
            ("ckpt-{}.safetensors", "has no name"),
            ("ckpt-{epoch:>5}.safetensors", "`>5`"),
            ("ckpt-{val_loss:08.3f}.safetensors", "Supported specs"),
            ("ckpt-{val_loss:.x}.safetensors", "`.x`"),
        ];
        for (template, expected) in cases {
            let error = FilepathTemplate::parse(template).unwrap_err();
            assert!(error.contains(expected), "{template}: {error}");
        }
    }

    #[test]
    fn integer_spec_on_decimal_is_rejected() {
        let template = FilepathTemplate::parse("{epoch:02d}-{val_loss:02d}").unwrap();
        let error = template.check_specs(&["epoch"]).unwrap_err();
        assert!(error.contains("`{val_loss:02d}`"), "{error}");
        assert!(template.check_specs(&["epoch", "val_loss"]).is_ok());
    }

    #[test]
    fn missing_value_is_named() {
        let template = FilepathTemplate::parse("{epoch}-{loss}").unwrap();
        let missing = template
            .format(|name| (name == "epoch").then_some(FieldValue::Integer(1)))
            .unwrap_err();
        assert_eq!(missing, "loss");
    }
}
