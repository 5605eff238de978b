//! Local verification of bearer JWTs: signature, `exp` and `nbf`, then the user id claim.

use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

use super::{AuthError, user_id_from_json};
use crate::config::JwtAuthConfig;

/// Clock skew tolerated on `exp`/`nbf`, in seconds.
const LEEWAY: u64 = 5;

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    claim: String,
}

impl Verifier {
    pub fn new(cfg: &JwtAuthConfig) -> Result<Verifier, String> {
        let algorithms: Vec<Algorithm> = cfg
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|e| format!("auth.jwt.algorithms: {a}: {e}")))
            .collect::<Result<_, _>>()?;
        let Some(first) = algorithms.first().copied() else {
            return Err("auth.jwt.algorithms is empty".into());
        };
        let Some(key) = cfg.key.as_deref() else {
            return Err(format!(
                "auth.mode jwt needs a key: set the {} environment variable or auth.jwt.key_file",
                cfg.secret_env
            ));
        };
        let name = format!("{first:?}");
        let key = match &name[..2] {
            "HS" => Ok(DecodingKey::from_secret(key)),
            "RS" | "PS" => DecodingKey::from_rsa_pem(key),
            "ES" => DecodingKey::from_ec_pem(key),
            _ => DecodingKey::from_ed_pem(key),
        }
        .map_err(|e| format!("auth.jwt key does not fit {name}: {e}"))?;
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY;
        Ok(Verifier {
            key,
            validation,
            claim: cfg.user_id_claim.clone(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Arc<str>, AuthError> {
        let data = decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
        data.claims
            .get(&self.claim)
            .and_then(user_id_from_json)
            .ok_or_else(|| {
                AuthError::Invalid(format!("the token has no usable {:?} claim", self.claim))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn cfg(secret: &str) -> JwtAuthConfig {
        JwtAuthConfig {
            secret_env: "X".into(),
            key_file: None,
            key: Some(Arc::from(secret.as_bytes())),
            algorithms: vec!["HS256".into()],
            user_id_claim: "sub".into(),
        }
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn valid_token_gives_the_user() {
        let v = Verifier::new(&cfg("s3cret")).unwrap();
        let t = token("s3cret", serde_json::json!({"sub": "7", "exp": now() + 60}));
        assert_eq!(v.verify(&t).unwrap().as_ref(), "7");
    }

    #[test]
    fn wrong_signature_expired_and_not_yet_valid_are_refused() {
        let v = Verifier::new(&cfg("s3cret")).unwrap();
        for t in [
            token("other", serde_json::json!({"sub": "7", "exp": now() + 60})),
            token("s3cret", serde_json::json!({"sub": "7", "exp": now() - 60})),
            token(
                "s3cret",
                serde_json::json!({"sub": "7", "exp": now() + 600, "nbf": now() + 300}),
            ),
            token("s3cret", serde_json::json!({"exp": now() + 60})),
            "garbage".to_owned(),
        ] {
            assert!(matches!(v.verify(&t), Err(AuthError::Invalid(_))), "{t}");
        }
    }

    #[test]
    fn missing_key_is_a_start_error() {
        let mut c = cfg("x");
        c.key = None;
        assert!(
            Verifier::new(&c)
                .err()
                .unwrap()
                .contains("environment variable")
        );
    }
}
