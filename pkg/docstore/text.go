package docstore

// Limits of a Query, the same on every backend. They keep one search from a
// caller (an audit search by a viewer) from exhausting the server: the
// embedded parser recurses per nesting level, Lucene's parser too, and a
// leading wildcard or a regular expression walks the whole term
// dictionary.
const (
	// MaxTextBytes bounds Query.Text.
	MaxTextBytes = 4096
	// MaxNesting bounds how deeply parentheses nest in Query.Text.
	MaxNesting = 32
	// MaxTermValues bounds the values of all Terms filters together.
	MaxTermValues = 100
)

// checkText refuses a query text beyond the limits, a regular expression
// (/…/, which Elasticsearch would run) and a term starting with a wildcard
// (other than a lone * that means "any value"). It scans the text the way
// query_string tokenises it: a backslash escapes the next character,
// phrases ("…") and ranges ([…], {…}) are opaque.
func checkText(s string) error {
	if len(s) > MaxTextBytes {
		return BadQueryf("query text is %d bytes; the limit is %d (MaxTextBytes)", len(s), MaxTextBytes)
	}
	depth := 0
	termStart := true // the next character would start a term
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			termStart = false
		case c == '"':
			end := closing(s, i+1, '"', '"')
			if end < 0 {
				return nil // the backend reports the unterminated phrase
			}
			i = end
			termStart = false
		case c == '[' || c == '{':
			end := closing(s, i+1, ']', '}')
			if end < 0 {
				return nil
			}
			i = end
			termStart = false
		case c == '(':
			depth++
			if depth > MaxNesting {
				return BadQueryf("query nests parentheses deeper than %d (MaxNesting)", MaxNesting)
			}
			termStart = true
		case c == ')':
			depth--
			termStart = false
		case c == '/':
			return BadQueryf("regular expressions (/…/) are not supported; escape '/' as '\\/'")
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ':':
			termStart = true
		case termStart && (c == '+' || c == '-' || c == '!'):
			// a prefix operator: the term starts after it
		case termStart && (c == '*' || c == '?'):
			if !loneStar(s, i) {
				return BadQueryf("a term must not start with a wildcard (offset %d)", i)
			}
			termStart = false
		default:
			termStart = false
		}
	}
	return nil
}

// closing returns the offset of the first unescaped a or b at or after i,
// or -1.
func closing(s string, i int, a, b byte) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case a, b:
			return i
		}
	}
	return -1
}

// loneStar reports whether s[i] is a '*' that is a whole term.
func loneStar(s string, i int) bool {
	if s[i] != '*' {
		return false
	}
	if i+1 == len(s) {
		return true
	}
	switch s[i+1] {
	case ' ', '\t', '\n', '\r', ':', ')', '^':
		return true
	}
	return false
}

// checkTerms bounds the Terms filters.
func checkTerms(terms map[string][]string) error {
	n := 0
	for field, vals := range terms {
		n += len(vals)
		for _, v := range vals {
			if len(v) > MaxTextBytes {
				return BadQueryf("a terms value of %q is %d bytes; the limit is %d (MaxTextBytes)", field, len(v), MaxTextBytes)
			}
		}
	}
	if n > MaxTermValues {
		return BadQueryf("terms filters have %d values; the limit is %d (MaxTermValues)", n, MaxTermValues)
	}
	return nil
}
