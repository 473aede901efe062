package osquerysim

import (
	"sort"
	"strconv"
	"strings"
)

// colType is an osquery column type. The names are the ones osquery declares
// its virtual tables with and reports from getQueryColumns, so they double as
// the SQLite declared types of our tables (and so give the same affinities).
type colType string

const (
	typeText     colType = "TEXT"
	typeInteger  colType = "INTEGER"
	typeBigint   colType = "BIGINT"
	typeUBigint  colType = "UNSIGNED BIGINT"
	typeDouble   colType = "DOUBLE"
	typeUnknown  colType = "UNKNOWN"
	typeDatetime         = typeText // osquery's DATETIME spec type is TEXT underneath
)

// colOpt mirrors osquery's ColumnOptions bit set, which the table registry
// reports to extensions in "op".
type colOpt int

const (
	optIndex         colOpt = 1
	optAdditional    colOpt = 4
	optOptimized     colOpt = 8
	optCollateNoCase colOpt = 64
	optCollateVer    colOpt = 256
)

// tableAttr mirrors osquery's TableAttributes.
type tableAttr int

const (
	attrUtility   tableAttr = 1
	attrCacheable tableAttr = 2
)

type column struct {
	name string
	typ  colType
	opts colOpt
}

type table struct {
	name    string
	columns []column
	attrs   tableAttr
}

func (t *table) column(name string) (column, bool) {
	for _, c := range t.columns {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

// ddl is the CREATE TABLE statement for t: osquery's own column types and
// collations. Primary keys are left out on purpose: osquery's virtual tables
// never enforce them, and a fixture may hold rows a real table would reject.
func (t *table) ddl() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(quoteIdent(t.name))
	b.WriteString(" (")
	for i, c := range t.columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c.name))
		b.WriteByte(' ')
		b.WriteString(string(c.typ))
		switch {
		case c.opts&optCollateNoCase != 0:
			b.WriteString(" COLLATE NOCASE")
		case c.opts&optCollateVer != 0:
			b.WriteString(" COLLATE VERSION")
		}
	}
	b.WriteByte(')')
	return b.String()
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// routeInfo is what osquery's table registry answers to {"action":"columns"}.
func (t *table) routeInfo() []map[string]string {
	out := make([]map[string]string, 0, len(t.columns)+1)
	for _, c := range t.columns {
		out = append(out, map[string]string{
			"id":   "column",
			"name": c.name,
			"type": string(c.typ),
			"op":   strconv.Itoa(int(c.opts)),
		})
	}
	return append(out, map[string]string{
		"id":         "attributes",
		"attributes": strconv.Itoa(int(t.attrs)),
	})
}

// tables holds the macOS view of osquery's schemas (specs/*.table and
// specs/darwin/*.table, with the DARWIN extended_schema columns and without
// the Windows and Linux ones). Column order follows the specs, because
// SELECT * returns columns in declaration order.
var tables = []*table{
	{name: "system_info", columns: []column{
		{"hostname", typeText, 0},
		{"uuid", typeText, optCollateNoCase},
		{"cpu_type", typeText, 0},
		{"cpu_subtype", typeText, 0},
		{"cpu_brand", typeText, 0},
		{"cpu_physical_cores", typeInteger, 0},
		{"cpu_logical_cores", typeInteger, 0},
		{"cpu_sockets", typeInteger, 0},
		{"cpu_microcode", typeText, 0},
		{"physical_memory", typeBigint, 0},
		{"hardware_vendor", typeText, 0},
		{"hardware_model", typeText, 0},
		{"hardware_version", typeText, 0},
		{"hardware_serial", typeText, 0},
		{"board_vendor", typeText, 0},
		{"board_model", typeText, 0},
		{"board_version", typeText, 0},
		{"board_serial", typeText, 0},
		{"computer_name", typeText, 0},
		{"local_hostname", typeText, 0},
	}},
	{name: "os_version", columns: []column{
		{"name", typeText, 0},
		{"version", typeText, optCollateVer},
		{"major", typeInteger, 0},
		{"minor", typeInteger, 0},
		{"patch", typeInteger, 0},
		{"build", typeText, 0},
		{"platform", typeText, 0},
		{"platform_like", typeText, 0},
		{"codename", typeText, 0},
		{"arch", typeText, 0},
		{"extra", typeText, 0},
	}},
	{name: "disk_encryption", columns: []column{
		{"name", typeText, optIndex},
		{"uuid", typeText, optCollateNoCase},
		{"encrypted", typeInteger, 0},
		{"type", typeText, 0},
		{"encryption_status", typeText, 0},
		{"uid", typeText, 0},
		{"user_uuid", typeText, optCollateNoCase},
		{"filevault_status", typeText, 0},
	}},
	{name: "alf", columns: []column{
		{"allow_signed_enabled", typeInteger, 0},
		{"firewall_unload", typeInteger, 0},
		{"global_state", typeInteger, 0},
		{"logging_enabled", typeInteger, 0},
		{"logging_option", typeInteger, 0},
		{"stealth_enabled", typeInteger, 0},
		{"version", typeText, optCollateVer},
	}},
	{name: "sip_config", columns: []column{
		{"config_flag", typeText, 0},
		{"enabled", typeInteger, 0},
		{"enabled_nvram", typeInteger, 0},
	}},
	{name: "gatekeeper", columns: []column{
		{"assessments_enabled", typeInteger, 0},
		{"dev_id_enabled", typeInteger, 0},
		{"version", typeText, optCollateVer},
		{"opaque_version", typeText, optCollateVer},
	}},
	{name: "screenlock", columns: []column{
		{"enabled", typeInteger, 0},
		{"grace_period", typeInteger, 0},
	}},
	{name: "users", columns: []column{
		{"uid", typeBigint, optIndex},
		{"gid", typeBigint, 0},
		{"uid_signed", typeBigint, 0},
		{"gid_signed", typeBigint, 0},
		{"username", typeText, optAdditional},
		{"description", typeText, 0},
		{"directory", typeText, 0},
		{"shell", typeText, 0},
		{"uuid", typeText, optIndex | optCollateNoCase},
		{"is_hidden", typeInteger, 0},
	}},
	{name: "logged_in_users", attrs: attrCacheable, columns: []column{
		{"type", typeText, 0},
		{"user", typeText, 0},
		{"tty", typeText, 0},
		{"host", typeText, 0},
		{"time", typeBigint, 0},
		{"pid", typeInteger, 0},
	}},
	// last reads the login records (utmpx on macOS); type is ut_type
	// (7 USER_PROCESS, 8 DEAD_PROCESS), type_name its name.
	{name: "last", columns: []column{
		{"username", typeText, 0},
		{"tty", typeText, 0},
		{"pid", typeInteger, 0},
		{"type", typeInteger, 0},
		{"type_name", typeText, 0},
		{"time", typeInteger, 0},
		{"host", typeText, 0},
	}},
	// On macOS the table has no sid, store*, or username columns: those
	// are Windows-only, and osqueryd fails queries that name them.
	{name: "certificates", attrs: attrCacheable, columns: []column{
		{"common_name", typeText, 0},
		{"subject", typeText, 0},
		{"subject2", typeText, 0},
		{"issuer", typeText, 0},
		{"issuer2", typeText, 0},
		{"ca", typeInteger, 0},
		{"self_signed", typeInteger, 0},
		{"not_valid_before", typeDatetime, 0},
		{"not_valid_after", typeDatetime, 0},
		{"signing_algorithm", typeText, 0},
		{"key_algorithm", typeText, 0},
		{"key_strength", typeText, 0},
		{"key_usage", typeText, 0},
		{"subject_key_id", typeText, optCollateNoCase},
		{"authority_key_id", typeText, optCollateNoCase},
		{"sha1", typeText, optCollateNoCase},
		{"path", typeText, optAdditional | optOptimized},
		{"serial", typeText, optCollateNoCase},
	}},
	// Agents health-check osqueryd through this table. Its row describes
	// the simulator process unless a fixture supplies one.
	{name: "osquery_info", attrs: attrUtility, columns: []column{
		{"pid", typeInteger, 0},
		{"uuid", typeText, optCollateNoCase},
		{"instance_id", typeText, 0},
		{"version", typeText, optCollateVer},
		{"config_hash", typeText, optCollateNoCase},
		{"config_valid", typeInteger, 0},
		{"extensions", typeText, 0},
		{"build_platform", typeText, 0},
		{"build_distro", typeText, 0},
		{"start_time", typeInteger, 0},
		{"watcher", typeInteger, 0},
		{"platform_mask", typeInteger, 0},
	}},
}

var tablesByName = func() map[string]*table {
	m := make(map[string]*table, len(tables))
	for _, t := range tables {
		m[t.name] = t
	}
	return m
}()

// Tables returns the names of the tables the simulator serves, sorted.
func Tables() []string {
	names := make([]string, 0, len(tables))
	for _, t := range tables {
		names = append(names, t.name)
	}
	sort.Strings(names)
	return names
}

// Columns returns the columns of a table in osquery's declaration order, or
// nil for a table the simulator does not serve.
func Columns(tableName string) []string {
	t, ok := tablesByName[tableName]
	if !ok {
		return nil
	}
	names := make([]string, len(t.columns))
	for i, c := range t.columns {
		names[i] = c.name
	}
	return names
}
