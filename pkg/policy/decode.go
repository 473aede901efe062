package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clearance/clearance/pkg/spelling"
	"gopkg.in/yaml.v3"
)

// topKeys are the keys the top-level mapping may hold.
var topKeys = []string{"policies"}

// field is one key of a policy: decode checks the key's value v and stores
// it in p. prefix starts each message ("policy "x": "). A key left out, or
// set to null where that means "not set", keeps the default from defaults.
type field struct {
	key string
	// mandatory keys must be present.
	mandatory bool
	decode    decodeFunc
}

// decodeFunc decodes one key's value v into p; key names it in messages.
type decodeFunc func(d *decoder, prefix, key string, v *yaml.Node, p *Policy)

// policyFields is the format of one policy; on a tie, typo suggestions
// prefer the earlier key. A new key is an entry here,
// a Policy field with its default in defaults, and its place in version's
// encoding (TestVersionCoversEveryField fails until it has one).
var policyFields = []field{
	{key: "id", mandatory: true, decode: func(d *decoder, prefix, key string, v *yaml.Node, p *Policy) {
		if s, ok := d.str(prefix, key, v); ok {
			d.checkID(prefix, v, s)
			p.ID = s
		}
	}},
	{key: "name", mandatory: true, decode: textField(func(p *Policy) *string { return &p.Name }, (*decoder).checkName)},
	{key: "description", decode: textField(func(p *Policy) *string { return &p.Description }, (*decoder).checkDescription)},
	{key: "user_text", decode: textField(func(p *Policy) *string { return &p.UserText }, (*decoder).checkUserText)},
	{key: "query", mandatory: true, decode: textField(func(p *Policy) *string { return &p.Query }, (*decoder).checkQuery)},
	{key: "platforms", decode: func(d *decoder, prefix, _ string, v *yaml.Node, p *Policy) {
		p.Platforms = d.platforms(prefix, v)
	}},
	{key: "resolution", decode: textField(func(p *Policy) *string { return &p.Resolution }, (*decoder).checkResolution)},
	{key: "required", decode: boolField(func(p *Policy) *bool { return &p.Required })},
	{key: "critical", decode: boolField(func(p *Policy) *bool { return &p.Critical })},
	{key: "interval", decode: func(d *decoder, prefix, _ string, v *yaml.Node, p *Policy) {
		if iv, ok := d.interval(prefix, v); ok {
			p.Interval = iv
		}
	}},
	{key: "enforcement", decode: func(d *decoder, prefix, key string, v *yaml.Node, p *Policy) {
		if s, ok := d.str(prefix, key, v); ok && s != "" {
			if !contains(EnforcementModes, s) {
				d.errorf(v, `%s"enforcement" %q is not one of monitor, warn, enforce%s`, prefix, clip(s), suggest(s, EnforcementModes))
				return
			}
			if s == EnforcementEnforce {
				s = "" // the default: same policy, same version
			}
			p.Enforcement = s
		}
	}},
	{key: "grace", decode: func(d *decoder, prefix, _ string, v *yaml.Node, p *Policy) {
		if g, ok := d.grace(prefix, v); ok {
			p.Grace = g
		}
	}},
	{key: "allow_bypass", decode: boolField(func(p *Policy) *bool { return &p.AllowBypass })},
	{key: "groups", decode: func(d *decoder, prefix, key string, v *yaml.Node, p *Policy) {
		p.Groups = d.groups(prefix, key, v)
	}},
	{key: "exclude_groups", decode: func(d *decoder, prefix, key string, v *yaml.Node, p *Policy) {
		p.ExcludeGroups = d.groups(prefix, key, v)
	}},
}

// policyKeys are the keys of policyFields, for unknown-key messages.
var policyKeys = func() []string {
	keys := make([]string, len(policyFields))
	for i, f := range policyFields {
		keys[i] = f.key
	}
	return keys
}()

// defaults is a policy before its keys are decoded: what a key left out
// means. A policy counts for access unless it says otherwise, so a
// forgotten "required" fails closed.
func defaults() Policy {
	return Policy{Required: true, Interval: DefaultInterval}
}

// textField is a string field, trimmed of surrounding space, then checked by
// check (if any) at the value's position.
func textField(dst func(*Policy) *string, check func(d *decoder, prefix string, v *yaml.Node, s string)) decodeFunc {
	return func(d *decoder, prefix, key string, v *yaml.Node, p *Policy) {
		s, ok := d.str(prefix, key, v)
		if !ok {
			return
		}
		*dst(p) = strings.TrimSpace(s)
		if check != nil {
			check(d, prefix, v, *dst(p))
		}
	}
}

// boolField is a true/false field; null keeps the default.
func boolField(dst func(*Policy) *bool) decodeFunc {
	return func(d *decoder, prefix, key string, v *yaml.Node, p *Policy) {
		if b, ok := d.boolean(prefix, key, v); ok {
			*dst(p) = b
		}
	}
}

// platformNames are osquery's platform names.
var platformNames = []string{"darwin", "linux", "windows", "chrome"}

// platformHints catch the names people reach for before osquery's.
var platformHints = map[string]string{
	"macos":    "darwin",
	"mac":      "darwin",
	"osx":      "darwin",
	"chromeos": "chrome",
}

// decoder walks the YAML node tree (never Go values, so aliases are never
// expanded) and collects every problem it meets.
type decoder struct {
	file    string
	errs    Errors
	dropped int // problems beyond maxErrors, counted but not kept
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.dropped++
		return
	}
	d.errs = append(d.errs, Error{File: d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// failed reports whether any problem was found, kept or not.
func (d *decoder) failed() bool { return len(d.errs) > 0 }

// decode parses data and returns its policies; problems land in d.errs.
func (d *decoder) decode(data []byte) []Policy {
	root, err := parseYAML(data)
	if err != nil {
		d.errs = append(d.errs, d.yamlError(err))
		return nil
	}
	if root == nil {
		d.errs = append(d.errs, Error{File: d.file, Line: 1, Col: 1, Msg: "no policies defined (the file is empty)"})
		return nil
	}
	d.rejectAnchors(root)
	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	return d.top(top)
}

// parseYAML returns the file's single document node, nil for an empty file.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// yaml.v3 reports malformed input through errors, but its parser
		// still has internal panics; hostile input must not crash the verifier.
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: cannot parse this document (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &extraDocError{line: extra.Line, col: extra.Column}
	case !errors.Is(err, io.EOF):
		return nil, err
	}
	return &doc, nil
}

type extraDocError struct{ line, col int }

func (e *extraDocError) Error() string { return "only one YAML document is allowed" }

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner). yaml.v3 v3.0.1 reports their line 0-based, and leaves the line
// out when it is the first one; yamlError adds the missing 1. With a
// context, the line is where the enclosing collection starts.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ...") into an Error.
// yaml.v3 gives no column for syntax errors, so these carry a line only.
func (d *decoder) yamlError(err error) Error {
	var extra *extraDocError
	if errors.As(err, &extra) {
		return Error{File: d.file, Line: extra.line, Col: extra.col, Msg: extra.Error()}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if parserProblems[msg] {
		line++
	}
	return Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg}
}

// rejectAnchors reports every anchor and alias. Aliases are how YAML
// "billion laughs" documents explode; a policy file has no need of them, so
// the format refuses both rather than trusting an expansion limit.
func (d *decoder) rejectAnchors(root *yaml.Node) {
	// An explicit stack: nesting depth is the input's to choose.
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			d.errorf(n, "YAML aliases (*%s) are not allowed", n.Value)
			continue // never follow n.Alias
		}
		if n.Anchor != "" {
			d.errorf(n, "YAML anchors (&%s) are not allowed", n.Anchor)
		}
		for i := len(n.Content) - 1; i >= 0; i-- {
			stack = append(stack, n.Content[i])
		}
	}
}

func (d *decoder) top(n *yaml.Node) []Policy {
	if isNull(n) {
		d.errorf(n, "no policies defined")
		return nil
	}
	if n.Kind == yaml.AliasNode {
		return nil // reported by rejectAnchors
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, `the top level must be a mapping with a "policies" list, not %s`, describe(n))
		return nil
	}
	var list *yaml.Node
	d.eachKey(n, "", topKeys, func(k, v *yaml.Node) {
		list = v
	})
	if list == nil {
		d.errorf(n, `no policies defined (add a "policies" list)`)
		return nil
	}
	switch {
	case list.Kind == yaml.AliasNode:
		return nil
	case isNull(list):
		d.errorf(list, "no policies defined")
		return nil
	case list.Kind != yaml.SequenceNode:
		d.errorf(list, `"policies" must be a list, not %s`, describe(list))
		return nil
	case len(list.Content) == 0:
		d.errorf(list, "no policies defined")
		return nil
	}

	policies := make([]Policy, 0, len(list.Content))
	firstID := map[string]*yaml.Node{}
	for i, item := range list.Content {
		p, idNode, ok := d.policy(i, item)
		if idNode != nil {
			if first, dup := firstID[p.ID]; dup {
				d.errorf(idNode, "policy %q: duplicate id (first defined at line %d)", p.ID, first.Line)
				ok = false
			} else {
				firstID[p.ID] = idNode
			}
		}
		if ok {
			policies = append(policies, p)
		}
	}
	return policies
}

// eachKey calls fn for every known key of mapping n, reporting non-string,
// duplicate and unknown keys. prefix starts each message ("policy "x": ").
func (d *decoder) eachKey(n *yaml.Node, prefix string, known []string, fn func(k, v *yaml.Node)) {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			continue // reported by rejectAnchors
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%skeys must be plain strings, not %s", prefix, describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "%sduplicate key %q (first at line %d)", prefix, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		if !contains(known, k.Value) {
			d.errorf(k, "%sunknown key %q%s", prefix, clip(k.Value), suggest(k.Value, known))
			continue
		}
		fn(k, v)
	}
}

// policy decodes the i-th list item. idNode is the node of a valid id, for
// the duplicate check; ok is false if the policy had any problem.
func (d *decoder) policy(i int, n *yaml.Node) (p Policy, idNode *yaml.Node, ok bool) {
	before := len(d.errs) + d.dropped
	label := fmt.Sprintf("policy %d", i+1)
	if n.Kind == yaml.AliasNode {
		return p, nil, false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: must be a mapping with id, name and query, not %s", label, describe(n))
		return p, nil, false
	}
	// Name the policy by its id in every message, wherever the id sits.
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if k.Kind == yaml.ScalarNode && k.Value == "id" && v.Kind == yaml.ScalarNode && ValidID(v.Value) {
			label = fmt.Sprintf("policy %q", v.Value)
			break
		}
	}
	prefix := label + ": "

	p = defaults()
	set := map[string]*yaml.Node{} // key → value node, for keys present
	d.eachKey(n, prefix, policyKeys, func(k, v *yaml.Node) {
		set[k.Value] = v
		if v.Kind == yaml.AliasNode {
			return // reported by rejectAnchors
		}
		for _, f := range policyFields {
			if f.key == k.Value {
				f.decode(d, prefix, f.key, v, &p)
				break
			}
		}
	})

	for _, f := range policyFields {
		if f.mandatory && set[f.key] == nil {
			d.errorf(n, "%smissing %q", prefix, f.key)
		}
	}
	// Rules across fields.
	for _, g := range p.ExcludeGroups {
		if containsFold(p.Groups, g) {
			d.errorf(set["exclude_groups"], "%sgroup %q is in both groups and exclude_groups", prefix, clip(g))
		}
	}
	if p.Critical && !p.Required {
		d.errorf(set["critical"], `%sa critical policy must be required: set "required: true" or "critical: false"`, prefix)
	}
	if p.AllowBypass && p.Critical {
		d.errorf(set["allow_bypass"], `%sa critical policy can never be bypassed: remove "allow_bypass" or set "critical: false"`, prefix)
	}
	if !p.Required {
		// Rollout keys soften how a required policy blocks; on one that
		// never blocks they would mislead whoever reads the file.
		for _, k := range []string{"grace", "allow_bypass"} {
			if v := set[k]; v != nil && !isNull(v) && (k != "allow_bypass" || p.AllowBypass) && (k != "grace" || p.Grace > 0) {
				d.errorf(v, `%s%q applies only to a required policy`, prefix, k)
			}
		}
	}
	if v := set["id"]; v != nil && ValidID(p.ID) {
		idNode = v
	}
	return p, idNode, len(d.errs)+d.dropped == before
}

func (d *decoder) checkID(prefix string, v *yaml.Node, id string) {
	switch {
	case id == "":
		d.errorf(v, `%s"id" is empty`, prefix)
	case !ValidID(id):
		d.errorf(v, `%sinvalid id %q: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`, prefix, clip(id))
	}
}

func (d *decoder) checkName(prefix string, v *yaml.Node, name string) {
	if !d.checkText(prefix, "name", v, name, false) {
		return
	}
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		d.errorf(v, `%s"name" is empty`, prefix)
	case n > maxNameChars:
		d.errorf(v, `%s"name" is %d characters; the limit is %d`, prefix, n, maxNameChars)
	}
}

func (d *decoder) checkResolution(prefix string, v *yaml.Node, r string) {
	if !d.checkText(prefix, "resolution", v, r, true) {
		return
	}
	if len(r) > maxResolutionSize {
		d.errorf(v, `%s"resolution" is %d bytes; the limit is %d`, prefix, len(r), maxResolutionSize)
	}
}

// checkDescription holds the description, which the admin API and the
// admin's terminal show, to the rule of the other texts.
func (d *decoder) checkDescription(prefix string, v *yaml.Node, s string) {
	d.checkText(prefix, "description", v, s, true)
}

func (d *decoder) checkUserText(prefix string, v *yaml.Node, s string) {
	if !d.checkText(prefix, "user_text", v, s, true) {
		return
	}
	if len(s) > maxUserTextSize {
		d.errorf(v, `%s"user_text" is %d bytes; the limit is %d: a sentence or two is enough`, prefix, len(s), maxUserTextSize)
	}
}

// checkText refuses text that is not UTF-8 or holds a control character
// (C0, DEL or C1: ESC and CSI start terminal escape sequences, CR rewrites a
// line): the name, description, resolution and user text reach the
// remediation page, the admin's terminal and `clearance-agent check`, and
// none needs them. Multi-line text (description, resolution, user_text)
// may hold line breaks and tabs.
// It reports whether s passed.
func (d *decoder) checkText(prefix, key string, v *yaml.Node, s string, multiline bool) bool {
	if !utf8.ValidString(s) {
		d.errorf(v, "%s%q is not valid UTF-8", prefix, key)
		return false
	}
	for i, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			d.errorf(v, "%s%q has control character %U at byte %d; write it as plain text", prefix, key, r, i)
			return false
		}
	}
	return true
}

func (d *decoder) checkQuery(prefix string, v *yaml.Node, q string) {
	if err := CheckQuery(q); err != nil {
		d.errorf(v, `%s"query" %v`, prefix, err)
	}
}

// str decodes a string field. Any plain scalar is taken as its literal
// text (so "name: 2024 baseline" works); null is the empty string.
func (d *decoder) str(prefix, key string, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		d.errorf(v, "%s%q must be a string, not %s", prefix, key, describe(v))
		return "", false
	}
	switch v.Tag {
	case "!!null":
		return "", true
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return v.Value, true
	default:
		d.errorf(v, "%s%q must be a string, not a %s value", prefix, key, clip(v.Tag))
		return "", false
	}
}

// boolean decodes true or false. Null means "not set": the default holds.
func (d *decoder) boolean(prefix, key string, v *yaml.Node) (b, ok bool) {
	if isNull(v) {
		return false, false
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!bool" {
		switch strings.ToLower(v.Value) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	hint := ""
	if v.Kind == yaml.ScalarNode && v.Tag == "!!str" && (strings.EqualFold(v.Value, "true") || strings.EqualFold(v.Value, "false")) {
		hint = " (remove the quotes)"
	}
	d.errorf(v, "%s%q must be true or false, got %s%s", prefix, key, describe(v), hint)
	return false, false
}

func (d *decoder) platforms(prefix string, v *yaml.Node) []string {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, `%s"platforms" must be a list such as [darwin], not %s`, prefix, describe(v))
		return nil
	}
	var out []string
	for _, item := range v.Content {
		if item.Kind == yaml.AliasNode {
			continue
		}
		if item.Kind != yaml.ScalarNode || isNull(item) {
			d.errorf(item, "%seach platform must be one of %s, not %s", prefix, strings.Join(platformNames, ", "), describe(item))
			continue
		}
		name := item.Value
		if !contains(platformNames, name) {
			hint := suggest(name, platformNames)
			if to, ok := platformHints[strings.ToLower(name)]; ok {
				hint = fmt.Sprintf(" (osquery calls it %q)", to)
			}
			if hint == "" {
				hint = fmt.Sprintf(" (want one of %s)", strings.Join(platformNames, ", "))
			}
			d.errorf(item, "%sunknown platform %q%s", prefix, clip(name), hint)
			continue
		}
		if contains(out, name) {
			d.errorf(item, "%sduplicate platform %q", prefix, name)
			continue
		}
		out = append(out, name)
	}
	return out
}

func (d *decoder) interval(prefix string, v *yaml.Node) (time.Duration, bool) {
	if isNull(v) {
		return 0, false
	}
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" && v.Tag != "!!int" && v.Tag != "!!float" {
		d.errorf(v, `%s"interval" must be a duration such as "60s" or "5m", not %s`, prefix, describe(v))
		return 0, false
	}
	iv, err := time.ParseDuration(v.Value)
	switch {
	case err != nil:
		d.errorf(v, `%s"interval" %q is not a duration: use a value such as "60s" or "5m"`, prefix, clip(v.Value))
	case iv < MinInterval:
		d.errorf(v, `%s"interval" %s is shorter than the minimum of %s`, prefix, iv, MinInterval)
	case iv > MaxInterval:
		d.errorf(v, `%s"interval" %s is longer than the maximum of %s`, prefix, iv, MaxInterval)
	default:
		return iv, true
	}
	return 0, false
}

// grace decodes a grace period: a duration up to MaxGrace, as Go writes
// them ("72h", "90m"); days are written in hours.
func (d *decoder) grace(prefix string, v *yaml.Node) (time.Duration, bool) {
	if isNull(v) {
		return 0, false
	}
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" && v.Tag != "!!int" && v.Tag != "!!float" {
		d.errorf(v, `%s"grace" must be a duration such as "72h", not %s`, prefix, describe(v))
		return 0, false
	}
	g, err := time.ParseDuration(v.Value)
	switch {
	case err != nil:
		d.errorf(v, `%s"grace" %q is not a duration: use a value such as "72h" (days are written in hours)`, prefix, clip(v.Value))
	case g < 0:
		d.errorf(v, `%s"grace" %s is negative`, prefix, g)
	case g > MaxGrace:
		d.errorf(v, `%s"grace" %s is longer than the maximum of %s (90 days): grant an exemption instead`, prefix, g, MaxGrace)
	default:
		return g, true
	}
	return 0, false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node holds, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return strconv.Quote(clip(n.Value))
	}
	return "an empty document"
}

// clip shortens user text echoed in messages.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for the closest known word within
// two edits (case-insensitive, a swap counting as one edit), or "".
func suggest(word string, known []string) string {
	if len(word) > 64 {
		return ""
	}
	best, bestDist := "", 3
	lw := strings.ToLower(word)
	for _, k := range known {
		if dist := spelling.Distance(lw, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" || bestDist >= len(best) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
