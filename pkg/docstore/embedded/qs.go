package embedded

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/drplane/drplane/pkg/docstore"
)

// This file parses the query_string subset of docstore.Query.Text into a
// small syntax tree; translate.go turns the tree into bleve queries.

// node is a parsed query.
type node interface{ isNode() }

// boolNode combines clauses the way Lucene does: every must and no mustNot
// clause has to match; should clauses count only when there is no must
// clause, and then at least one has to match.
type boolNode struct {
	must, should, mustNot []node
}

// termNode is a word, a phrase or a wildcard pattern, on one field or (field
// "") on the default fields.
type termNode struct {
	field    string
	text     string // unescaped; for wildcards see pattern
	phrase   bool
	wildcard bool
	pattern  []patPart // wildcard terms only
}

// patPart is a literal run or a wildcard (* or ?) of a wildcard term.
type patPart struct {
	lit  string
	wild byte // 0 for a literal, '*' or '?'
}

// rangeNode bounds a field; an empty bound with open set is unbounded.
type rangeNode struct {
	field          string
	lo, hi         string
	loOpen, hiOpen bool
	loInc, hiInc   bool
}

// existsNode matches documents that have a value in field.
type existsNode struct{ field string }

// allNode matches every document.
type allNode struct{}

func (boolNode) isNode()   {}
func (termNode) isNode()   {}
func (rangeNode) isNode()  {}
func (existsNode) isNode() {}
func (allNode) isNode()    {}

type modifier int

const (
	modNone modifier = iota
	modMust
	modNot
)

type clause struct {
	mod modifier
	n   node
}

type parser struct {
	src   string
	pos   int
	depth int // recursion depth, bounded by maxDepth
}

// maxDepth bounds the parser's recursion: a group costs two levels, a NOT
// or a field prefix one. docstore.Query.Normalize refuses deeper
// parentheses first (docstore.MaxNesting); this bound holds for any input.
const maxDepth = 4 * docstore.MaxNesting

// enter counts one level of recursion; the caller defers p.leave.
func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errorf("query nests deeper than %d levels", maxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// parseQuery parses s; an empty or blank s matches everything.
func parseQuery(s string) (node, error) {
	p := &parser{src: s}
	p.skipSpace()
	if p.eof() {
		return allNode{}, nil
	}
	n, err := p.parseOr("")
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() {
		if p.peek() == ')' {
			return nil, p.errorf("unbalanced ')'")
		}
		return nil, p.errorf("unexpected %q", p.peek())
	}
	return n, nil
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%s at offset %d", fmt.Sprintf(format, args...), p.pos)
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

func (p *parser) peek() byte { return p.src[p.pos] }

func (p *parser) skipSpace() {
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += n
	}
}

// keyword reports whether the input continues with the operator word w
// (AND, OR, NOT) standing alone.
func (p *parser) keyword(w string) bool {
	if !strings.HasPrefix(p.src[p.pos:], w) {
		return false
	}
	end := p.pos + len(w)
	if end == len(p.src) {
		return true
	}
	r, _ := utf8.DecodeRuneInString(p.src[end:])
	return unicode.IsSpace(r) || r == '(' || r == ')'
}

func (p *parser) symbol(s string) bool { return strings.HasPrefix(p.src[p.pos:], s) }

// parseOr parses clauses joined by OR or by nothing (the default operator).
func (p *parser) parseOr(field string) (node, error) {
	var items []clause
	for {
		c, err := p.parseAnd(field)
		if err != nil {
			return nil, err
		}
		items = append(items, c)
		p.skipSpace()
		if p.eof() || p.peek() == ')' {
			break
		}
		switch {
		case p.keyword("OR"):
			p.pos += 2
		case p.symbol("||"):
			p.pos += 2
		}
		p.skipSpace()
		if p.eof() || p.peek() == ')' {
			return nil, p.errorf("OR without a right-hand side")
		}
	}
	if len(items) == 1 && items[0].mod == modNone {
		return items[0].n, nil
	}
	var b boolNode
	for _, c := range items {
		switch c.mod {
		case modMust:
			b.must = append(b.must, c.n)
		case modNot:
			b.mustNot = append(b.mustNot, c.n)
		default:
			b.should = append(b.should, c.n)
		}
	}
	return b, nil
}

// parseAnd parses clauses joined by AND; the result is one clause.
func (p *parser) parseAnd(field string) (clause, error) {
	first, err := p.parseUnary(field)
	if err != nil {
		return clause{}, err
	}
	parts := []clause{first}
	for {
		p.skipSpace()
		switch {
		case p.keyword("AND"):
			p.pos += 3
		case p.symbol("&&"):
			p.pos += 2
		default:
			if len(parts) == 1 {
				return first, nil
			}
			var b boolNode
			for _, c := range parts {
				if c.mod == modNot {
					b.mustNot = append(b.mustNot, c.n)
				} else {
					b.must = append(b.must, c.n)
				}
			}
			return clause{n: b}, nil
		}
		p.skipSpace()
		if p.eof() || p.peek() == ')' {
			return clause{}, p.errorf("AND without a right-hand side")
		}
		c, err := p.parseUnary(field)
		if err != nil {
			return clause{}, err
		}
		parts = append(parts, c)
	}
}

func (p *parser) parseUnary(field string) (clause, error) {
	defer p.leave()
	if err := p.enter(); err != nil {
		return clause{}, err
	}
	p.skipSpace()
	if p.eof() {
		return clause{}, p.errorf("unexpected end of query")
	}
	switch {
	case p.keyword("NOT"):
		p.pos += 3
		return p.negate(field)
	case p.peek() == '!':
		p.pos++
		return p.negate(field)
	case p.peek() == '+':
		p.pos++
		n, err := p.parsePrimary(field)
		return clause{mod: modMust, n: n}, err
	case p.peek() == '-':
		p.pos++
		n, err := p.parsePrimary(field)
		return clause{mod: modNot, n: n}, err
	case p.keyword("AND"), p.keyword("OR"), p.symbol("&&"), p.symbol("||"):
		return clause{}, p.errorf("operator without a left-hand side")
	}
	n, err := p.parsePrimary(field)
	return clause{n: n}, err
}

func (p *parser) negate(field string) (clause, error) {
	p.skipSpace()
	if p.eof() {
		return clause{}, p.errorf("NOT without an operand")
	}
	c, err := p.parseUnary(field)
	if err != nil {
		return clause{}, err
	}
	if c.mod == modNot { // NOT NOT x, NOT -x
		return clause{mod: modMust, n: c.n}, nil
	}
	return clause{mod: modNot, n: c.n}, nil
}

func (p *parser) parsePrimary(field string) (node, error) {
	defer p.leave()
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.eof() {
		return nil, p.errorf("unexpected end of query")
	}
	switch c := p.peek(); c {
	case '(':
		p.pos++
		n, err := p.parseOr(field)
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.eof() || p.peek() != ')' {
			return nil, p.errorf("missing ')'")
		}
		p.pos++
		return n, p.skipBoost()
	case '"':
		text, err := p.readPhrase()
		if err != nil {
			return nil, err
		}
		return termNode{field: field, text: text, phrase: true}, p.modifiers()
	case '[', '{':
		if field == "" {
			return nil, p.errorf("a range needs a field")
		}
		return p.readRange(field)
	case ')', ':', '^', '~', ']', '}':
		return nil, p.errorf("unexpected %q", c)
	case '/':
		return nil, p.errorf("regular expressions are not supported")
	}
	word, t, err := p.readTerm()
	if err != nil {
		return nil, err
	}
	// field:value
	if !p.eof() && p.peek() == ':' {
		if field != "" {
			return nil, p.errorf("field %q inside field %q", word, field)
		}
		if t.wildcard {
			return nil, p.errorf("wildcard field names are not supported")
		}
		p.pos++
		p.skipSpace()
		return p.parseFieldValue(word)
	}
	t.field = field
	if t.wildcard && isStarOnly(t.pattern) {
		if field == "" {
			return allNode{}, p.modifiers()
		}
		return existsNode{field: field}, p.modifiers()
	}
	return t, p.modifiers()
}

func (p *parser) parseFieldValue(field string) (node, error) {
	if p.eof() {
		return nil, p.errorf("field %q has no value", field)
	}
	if field == "_exists_" {
		name, t, err := p.readTerm()
		if err != nil {
			return nil, err
		}
		if t.wildcard || name == "" {
			return nil, p.errorf("_exists_ needs a field name")
		}
		return existsNode{field: name}, p.skipBoost()
	}
	if field == "*" {
		return p.parsePrimary("")
	}
	for _, op := range []string{">=", "<=", ">", "<"} {
		if !p.symbol(op) {
			continue
		}
		p.pos += len(op)
		var v string
		var err error
		if !p.eof() && p.peek() == '"' {
			v, err = p.readPhrase()
		} else {
			v, _, err = p.readTerm()
		}
		if err != nil {
			return nil, err
		}
		if v == "" {
			return nil, p.errorf("%s without a value", op)
		}
		r := rangeNode{field: field, loOpen: true, hiOpen: true}
		switch op {
		case ">=", ">":
			r.lo, r.loOpen, r.loInc = v, false, op == ">="
		default:
			r.hi, r.hiOpen, r.hiInc = v, false, op == "<="
		}
		return r, p.skipBoost()
	}
	switch p.peek() {
	case '(', '"', '[', '{':
		return p.parsePrimary(field)
	}
	if p.keyword("AND") || p.keyword("OR") || p.keyword("NOT") {
		return nil, p.errorf("field %q has no value", field)
	}
	return p.parsePrimary(field)
}

// isSpecial reports characters that end a bare term.
func isSpecial(c byte) bool {
	switch c {
	case '(', ')', ':', '^', '~', '"', '[', ']', '{', '}', '/', '\\':
		return true
	}
	return false
}

// readTerm reads a bare term with escapes; '+', '-' and '!' are part of a
// term after its first character.
func (p *parser) readTerm() (string, termNode, error) {
	var lit strings.Builder
	var t termNode
	start := p.pos
	flush := func() {
		if lit.Len() > 0 {
			t.pattern = append(t.pattern, patPart{lit: lit.String()})
			lit.Reset()
		}
	}
	var text strings.Builder
	for !p.eof() {
		c := p.peek()
		if c == '\\' {
			if p.pos+1 >= len(p.src) {
				return "", t, p.errorf("dangling escape")
			}
			r, n := utf8.DecodeRuneInString(p.src[p.pos+1:])
			lit.WriteRune(r)
			text.WriteRune(r)
			p.pos += 1 + n
			continue
		}
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if unicode.IsSpace(r) || isSpecial(c) {
			break
		}
		if p.pos == start && (c == '+' || c == '-' || c == '!') {
			break
		}
		if c == '*' || c == '?' {
			flush()
			t.pattern = append(t.pattern, patPart{wild: c})
			t.wildcard = true
		} else {
			lit.WriteRune(r)
		}
		text.WriteString(p.src[p.pos : p.pos+n])
		p.pos += n
	}
	flush()
	if p.pos == start {
		if p.eof() {
			return "", t, p.errorf("unexpected end of query")
		}
		return "", t, p.errorf("unexpected %q", p.peek())
	}
	t.text = text.String()
	return t.text, t, nil
}

func (p *parser) readPhrase() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		switch c {
		case '\\':
			if p.pos+1 >= len(p.src) {
				return "", p.errorf("dangling escape")
			}
			r, n := utf8.DecodeRuneInString(p.src[p.pos+1:])
			b.WriteRune(r)
			p.pos += 1 + n
		case '"':
			p.pos++
			return b.String(), nil
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", p.errorf("unterminated phrase")
}

// readRange reads [lo TO hi] with '[' ']' inclusive and '{' '}' exclusive.
func (p *parser) readRange(field string) (node, error) {
	r := rangeNode{field: field, loInc: p.peek() == '['}
	p.pos++
	var words []string
	for {
		p.skipSpace()
		if p.eof() {
			return nil, p.errorf("unterminated range")
		}
		c := p.peek()
		if c == ']' || c == '}' {
			r.hiInc = c == ']'
			p.pos++
			break
		}
		if c == '"' {
			w, err := p.readPhrase()
			if err != nil {
				return nil, err
			}
			words = append(words, "\x00"+w) // quoted: never "*" or TO
			continue
		}
		var b strings.Builder
		for !p.eof() {
			c := p.peek()
			if c == ']' || c == '}' || c == ' ' || c == '\t' || c == '\n' {
				break
			}
			if c == '\\' && p.pos+1 < len(p.src) {
				p.pos++
				c = p.peek()
			}
			b.WriteByte(c)
			p.pos++
		}
		words = append(words, b.String())
	}
	if len(words) != 3 || words[1] != "TO" {
		return nil, p.errorf("a range is [from TO to]")
	}
	bound := func(w string) (string, bool) {
		if w == "*" {
			return "", true
		}
		return strings.TrimPrefix(w, "\x00"), false
	}
	r.lo, r.loOpen = bound(words[0])
	r.hi, r.hiOpen = bound(words[2])
	return r, p.skipBoost()
}

// modifiers consumes a boost (^n, ignored) and refuses fuzzy and proximity
// (~n), which the embedded store does not support.
func (p *parser) modifiers() error {
	if !p.eof() && p.peek() == '~' {
		return p.errorf("fuzzy and proximity queries (~) are not supported")
	}
	return p.skipBoost()
}

func (p *parser) skipBoost() error {
	if p.eof() || p.peek() != '^' {
		return nil
	}
	p.pos++
	start := p.pos
	for !p.eof() && (p.peek() >= '0' && p.peek() <= '9' || p.peek() == '.') {
		p.pos++
	}
	if p.pos == start {
		return p.errorf("boost without a number")
	}
	return nil
}

func isStarOnly(pat []patPart) bool {
	return len(pat) == 1 && pat[0].wild == '*'
}
