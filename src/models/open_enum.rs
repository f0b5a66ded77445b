//! open_enum.rs defines the enumerations of the models: a known value per Genesys' published
//! schema, and `Other(String)` for any value the schema did not list when this crate was
//! written, so that a new value on the service never makes a body fail to parse. It holds no
//! data of its own.

/// An enumeration of string values with an `Other(String)` fallback.
///
/// Each variant names its wire text first, then any other spelling that means the same
/// (`AVAILABLE | "Available"`): parsing accepts all of them, serialising writes the first.
/// `Other` keeps an unknown value exactly as sent, and serialises back to it.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $text:literal $(| $alias:literal)*,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[doc = concat!("\n\nOn the wire: `\"", $text, "\"`.")]
                $variant,
            )*
            /// A value this version of the crate does not know, exactly as the service sent it.
            /// A later version may give it a variant of its own: compare through
            /// [`as_str`](Self::as_str) if you must recognise a value not listed here. Build
            /// values with `From<&str>`, which never makes an `Other` of a known value (an
            /// `Other` holding a known value is not equal to that value's variant).
            Other(String),
        }

        impl $name {
            /// The value as written on the wire (the first spelling for a known variant).
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(text) => text,
                }
            }

            /// Whether the value is one this version of the crate does not know.
            pub fn is_other(&self) -> bool {
                matches!(self, $name::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $($text $(| $alias)* => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a string (", stringify!($name), ")"))
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        Ok($name::from(text))
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    open_enum! {
        /// A test enumeration.
        pub enum Colour {
            /// Red.
            Red = "RED" | "Red",
            /// Dotted.
            DarkBlue = "dark.blue",
        }
    }

    #[test]
    fn known_values_and_their_aliases_parse_to_their_variant_and_write_the_first_spelling() {
        for text in ["\"RED\"", "\"Red\""] {
            let colour: Colour = serde_json::from_str(text).unwrap();
            assert_eq!(colour, Colour::Red);
            assert_eq!(serde_json::to_string(&colour).unwrap(), "\"RED\"");
        }
        let dotted: Colour = serde_json::from_str("\"dark.blue\"").unwrap();
        assert_eq!(dotted, Colour::DarkBlue);
        assert_eq!(dotted.to_string(), "dark.blue");
        assert!(!dotted.is_other());
    }

    #[test]
    fn an_unknown_value_is_kept_as_sent_and_written_back_unchanged() {
        let colour: Colour = serde_json::from_str("\"ULTRAVIOLET\"").unwrap();
        assert_eq!(colour, Colour::Other("ULTRAVIOLET".into()));
        assert!(colour.is_other());
        assert_eq!(colour.as_str(), "ULTRAVIOLET");
        assert_eq!(serde_json::to_string(&colour).unwrap(), "\"ULTRAVIOLET\"");
        // Escaped text goes through the owned path of the deserializer.
        let escaped: Colour = serde_json::from_str(r#""R\u0045D""#).unwrap();
        assert_eq!(escaped, Colour::Red);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_an_error_naming_the_type() {
        let error = serde_json::from_str::<Colour>("42")
            .unwrap_err()
            .to_string();
        assert!(error.contains("a string (Colour)"), "{error}");
    }
}
