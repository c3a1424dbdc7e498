//! Typed messages: a command bound to a Rust type, with its parameters declared.
//!
//! As with the Communicator's message definitions, a [`Schema`] lists each parameter as
//! required or optional and gives its type; [`Schema::validate`] checks a message against it and
//! names the field and the reason when it fails. A [`TypedMessage`] maps a serde struct onto the
//! parameters — one parameter per top-level field, strings raw and other types as JSON text —
//! so typed messages stay readable by stock cd: peers (`RUN argv=["ls"];timeout=5`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::address::Destination;
use crate::error::{Error, Invalid, Result};
use crate::message::{Message, Params};

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamType {
    /// Any text.
    String,
    /// A signed 64-bit integer (a leading `+` is accepted, as the Communicator does).
    Integer,
    /// A finite floating-point number.
    Float,
    /// `true` or `false`.
    Bool,
    /// Any JSON value, as text.
    Json,
}

impl ParamType {
    fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            ParamType::String => Ok(Value::String(text.to_owned())),
            ParamType::Integer => text
                .strip_prefix('+')
                .unwrap_or(text)
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{}` is not an integer", crate::name::clip(text))),
            ParamType::Float => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("`{}` is not a finite number", crate::name::clip(text))),
            ParamType::Bool => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!(
                    "`{}` is not true or false",
                    crate::name::clip(text)
                )),
            },
            ParamType::Json => serde_json::from_str(text).map_err(|e| format!("not JSON: {e}")),
        }
    }
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// Whether it must be present.
    pub required: bool,
}

/// The declared parameters of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    command: &'static str,
    params: Vec<ParamSpec>,
    allow_extra: bool,
}

impl Schema {
    /// A schema for `command` with no parameters yet. Undeclared parameters are accepted
    /// (as the Communicator does) unless [`Schema::deny_extra`] is called.
    pub fn new(command: &'static str) -> Self {
        Self {
            command,
            params: Vec::new(),
            allow_extra: true,
        }
    }

    /// Declare a required parameter.
    pub fn required(mut self, name: &'static str, ty: ParamType) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            required: true,
        });
        self
    }

    /// Declare an optional parameter.
    pub fn optional(mut self, name: &'static str, ty: ParamType) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            required: false,
        });
        self
    }

    /// Reject parameters that are not declared.
    pub fn deny_extra(mut self) -> Self {
        self.allow_extra = false;
        self
    }

    /// The command this schema describes.
    pub fn command(&self) -> &'static str {
        self.command
    }

    /// The declared parameters.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// Check a message: command, presence and type of every declared parameter, extras.
    pub fn validate(&self, msg: &Message) -> Result<(), Invalid> {
        self.parse_params(msg).map(|_| ())
    }

    /// Validate, and return the declared parameters as a JSON object of typed values.
    fn parse_params(&self, msg: &Message) -> Result<Map<String, Value>, Invalid> {
        if msg.command != self.command {
            return Err(Invalid::new(
                "command",
                format!("expected {}, got {}", self.command, msg.command),
            ));
        }
        let mut object = Map::new();
        for spec in &self.params {
            match msg.params.get(spec.name) {
                Some(text) => {
                    let value = spec
                        .ty
                        .parse(text)
                        .map_err(|reason| Invalid::new(spec.name, reason))?;
                    object.insert(spec.name.to_owned(), value);
                }
                None if spec.required => {
                    return Err(Invalid::new(spec.name, "required parameter is missing"))
                }
                None => {}
            }
        }
        if !self.allow_extra {
            if let Some(extra) = msg
                .params
                .keys()
                .find(|k| !self.params.iter().any(|p| p.name == k.as_str()))
            {
                return Err(Invalid::new(extra.as_str(), "parameter is not declared"));
            }
        }
        Ok(object)
    }
}

/// A command bound to a Rust type.
///
/// ```
/// use comms_core::{Schema, ParamType, TypedMessage};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Resize { width: u32, height: u32, label: Option<String> }
/// impl TypedMessage for Resize {
///     const COMMAND: &'static str = "RESIZE";
///     fn schema() -> Schema {
///         Schema::new("RESIZE")
///             .required("width", ParamType::Integer)
///             .required("height", ParamType::Integer)
///             .optional("label", ParamType::String)
///     }
/// }
/// let to = comms_core::Destination::Service("images".into());
/// let msg = Resize { width: 3, height: 4, label: None }.to_message(to).unwrap();
/// assert_eq!(msg.param("width"), Some("3"));
/// assert_eq!(Resize::from_message(&msg).unwrap().height, 4);
/// ```
pub trait TypedMessage: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The command this type travels as.
    const COMMAND: &'static str;

    /// Its declared parameters.
    fn schema() -> Schema;

    /// Encode into parameters (checked against the schema).
    fn to_params(&self) -> Result<Params> {
        let value = serde_json::to_value(self)?;
        let Value::Object(object) = value else {
            return Err(Error::invalid(
                Self::COMMAND,
                "a typed message must serialize to a struct/map",
            ));
        };
        let mut params = Params::new();
        for (name, value) in object {
            match value {
                Value::Null => {}
                Value::String(s) => {
                    params.insert(name, s);
                }
                other => {
                    params.insert(name, other.to_string());
                }
            }
        }
        Ok(params)
    }

    /// A message carrying this value, validated against the schema.
    fn to_message(&self, to: impl Into<Destination>) -> Result<Message> {
        let mut msg = Message::new(Self::COMMAND, to)?;
        msg.params = self.to_params()?;
        Self::schema().validate(&msg)?;
        Ok(msg)
    }

    /// Decode from a message; the error names the field and the reason.
    fn from_message(msg: &Message) -> Result<Self, Invalid> {
        let object = Self::schema().parse_params(msg)?;
        serde_json::from_value(Value::Object(object))
            .map_err(|e| Invalid::new(Self::COMMAND, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Run {
        argv: Vec<String>,
        timeout: Option<i64>,
        shell: bool,
        cwd: String,
    }

    impl TypedMessage for Run {
        const COMMAND: &'static str = "RUN";
        fn schema() -> Schema {
            Schema::new("RUN")
                .required("argv", ParamType::Json)
                .optional("timeout", ParamType::Integer)
                .required("shell", ParamType::Bool)
                .required("cwd", ParamType::String)
        }
    }

    fn to() -> Destination {
        Destination::Service("agent".into())
    }

    #[test]
    fn round_trip_as_readable_params() {
        let run = Run {
            argv: vec!["ls".into(), "-l".into()],
            timeout: Some(5),
            shell: false,
            cwd: "/tmp".into(),
        };
        let m = run.to_message(to()).unwrap();
        assert_eq!(m.param("argv"), Some(r#"["ls","-l"]"#));
        assert_eq!(m.param("timeout"), Some("5"));
        assert_eq!(m.param("cwd"), Some("/tmp"));
        assert_eq!(Run::from_message(&m).unwrap(), run);
    }

    #[test]
    fn invalid_names_field_and_reason() {
        let m = Message::new("RUN", to())
            .unwrap()
            .with_param("argv", "[]")
            .with_param("shell", "yes")
            .with_param("cwd", "/");
        let e = Run::from_message(&m).unwrap_err();
        assert_eq!(e.field, "shell");
        assert!(e.reason.contains("true or false"), "{e}");

        let m = Message::new("RUN", to())
            .unwrap()
            .with_param("shell", "true");
        let e = Run::from_message(&m).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("argv", "required parameter is missing")
        );

        let m = Message::new("RUN", to())
            .unwrap()
            .with_param("argv", "[]")
            .with_param("shell", "true")
            .with_param("cwd", "/")
            .with_param("timeout", "+12");
        assert_eq!(Run::from_message(&m).unwrap().timeout, Some(12));
    }

    #[test]
    fn deny_extra() {
        let s = Schema::new("X")
            .optional("a", ParamType::String)
            .deny_extra();
        let m = Message::new("X", to()).unwrap().with_param("b", "1");
        assert_eq!(s.validate(&m).unwrap_err().field, "b");
    }
}
