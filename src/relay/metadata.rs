//! The server metadata entries Delta Chat reads (spec 5.1).

use super::service::Relay;

/// The app versions document the reference ships (spec 5.6), served minified.
const APPVERSIONS_JSON: &str = r#"{"clients":[{"clientId":"deltachat","sources":[{"sourceId":"gplay","versionInteger":754,"versionString":"2.57.0","downloadUrl":"https://github.com/deltachat/deltachat-android/releases/download/v2.57.0/deltachat-gplay-release-2.57.0.apk"}]}]}"#;

impl Relay {
    /// The value of a server metadata entry (spec 5.1), or `None`.
    pub fn server_metadata(&self, entry: &str) -> Option<String> {
        if let Some(v) = self.server_metadata.as_ref().and_then(|p| p.get(entry)) {
            return Some(v);
        }
        match entry {
            "/shared/vendor/deltachat/irohrelay" => match &self.config.iroh_relay {
                None => Some(format!("https://{}", self.config.mail_domain)),
                Some(v) if v.is_empty() => None,
                Some(v) => Some(v.clone()),
            },
            "/shared/vendor/deltachat/maxsmtprecipients" => Some("1000".into()),
            // The server's clock, so a client can tell how far its own is off.
            "/shared/vendor/deltachat/unixtimestamp" => {
                Some(super::service::unix_now().to_string())
            }
            "/shared/vendor/deltachat/appversions" => Some(APPVERSIONS_JSON.into()),
            "/shared/admin" if !self.config.privacy_mail.is_empty() => {
                Some(format!("mailto:{}", self.config.privacy_mail))
            }
            _ => None,
        }
    }
}
