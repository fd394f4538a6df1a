package bus

import (
	"net/url"
	"strings"
)

// Redact returns a NATS server list (one URL or several, comma-separated)
// fit for errors and logs: the user information of each URL (a user and
// password, or a token in the user part) is replaced by "redacted". Text
// that does not parse as a URL is shown only up to its scheme.
func Redact(servers string) string {
	parts := strings.Split(servers, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		switch {
		case err != nil:
			scheme, _, found := strings.Cut(p, "://")
			if !found {
				scheme = "?"
			}
			parts[i] = scheme + "://(unparsable URL)"
		case u.User != nil:
			u.User = url.User("redacted")
			parts[i] = u.String()
		default:
			parts[i] = p
		}
	}
	return strings.Join(parts, ",")
}
