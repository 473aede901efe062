package osquerysim

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/osquery/osquery-go/gen/osquery"
)

// Status codes of osquery's ExtensionStatus. Every call answers with a
// status rather than a Thrift exception, as osqueryd does; a failed query is
// EXT_FAILED (1) with SQLite's error message.
const (
	codeSuccess = int32(osquery.ExtensionCode_EXT_SUCCESS)
	codeFailed  = int32(osquery.ExtensionCode_EXT_FAILED)
)

// managerUUID is the route UUID osqueryd's extension manager reports for
// itself in every status it returns.
const managerUUID = 0

// handler implements the ExtensionManager service on a Sim.
type handler struct {
	sim *Sim
}

var _ osquery.ExtensionManager = (*handler)(nil)

func status(code int32, msg string) *osquery.ExtensionStatus {
	return &osquery.ExtensionStatus{Code: code, Message: msg, UUID: managerUUID}
}

func response(code int32, msg string, rows []map[string]string) *osquery.ExtensionResponse {
	if rows == nil {
		rows = []map[string]string{}
	}
	return &osquery.ExtensionResponse{Status: status(code, msg), Response: rows}
}

// Ping answers as osqueryd's manager does: success, "pong", its own UUID.
func (h *handler) Ping(context.Context) (*osquery.ExtensionStatus, error) {
	return status(codeSuccess, "pong"), nil
}

// Call reaches a registry plugin. The simulator has the table registry (one
// plugin per table it serves, answering "generate" from the fixture and
// "columns" with the schema); other osqueryd registries exist but have no
// plugins here.
func (h *handler) Call(_ context.Context, registry, item string, req osquery.ExtensionPluginRequest) (*osquery.ExtensionResponse, error) {
	if !knownRegistries[registry] {
		return response(codeFailed, "Unknown registry requested: "+registry, nil), nil
	}
	t, ok := tablesByName[item]
	if registry != "table" || !ok {
		return response(codeFailed, "Cannot call registry item: "+item, nil), nil
	}
	action, ok := req["action"]
	if !ok {
		return response(codeFailed, "Table plugins must include a request action", nil), nil
	}
	switch action {
	case "generate":
		return response(codeSuccess, "OK", h.sim.generate(t.name)), nil
	case "columns":
		return response(codeSuccess, "OK", t.routeInfo()), nil
	case "insert", "update", "delete":
		// osqueryd's built-in tables answer writes this way.
		return response(codeSuccess, "OK", []map[string]string{{"status": "readonly"}}), nil
	}
	return response(codeFailed, "Unknown table plugin action: "+action, nil), nil
}

// knownRegistries are osqueryd's registries that extensions may call or
// register plugins in.
var knownRegistries = map[string]bool{
	"config": true, "config_parser": true, "database": true, "distributed": true,
	"enroll": true, "event_publisher": true, "event_subscriber": true,
	"killswitch": true, "logger": true, "numeric_monitoring": true,
	"sql": true, "table": true,
}

// generate is a table plugin's raw output: the fixture's rows, strings as
// the table code produced them, unset columns absent.
func (s *Sim) generate(tableName string) []map[string]string {
	s.mu.RLock()
	rows, ok := s.fixture.Tables[tableName]
	if !ok {
		rows = s.defaultRows(s.fixture)[tableName]
	}
	s.mu.RUnlock()
	out := make([]map[string]string, len(rows))
	for i, r := range rows {
		m := make(map[string]string, len(r))
		for k, v := range r {
			m[k] = v
		}
		out[i] = m
	}
	return out
}

// Shutdown stops the server once this reply is sent, as osqueryd exits.
func (h *handler) Shutdown(context.Context) error {
	h.sim.requestStop()
	return nil
}

// Extensions lists the extensions registered with the simulator.
func (h *handler) Extensions(context.Context) (osquery.InternalExtensionList, error) {
	return h.sim.ext.list(), nil
}

// Options reports osqueryd's flags: those the process was given, over the
// defaults of the ones clients commonly read.
func (h *handler) Options(context.Context) (osquery.InternalOptionList, error) {
	out := osquery.InternalOptionList{}
	for name, d := range defaultFlags {
		out[name] = &osquery.InternalOptionInfo{Value: d.value, DefaultValue: d.value, Type: d.typ}
	}
	for name, v := range h.sim.flags {
		o, ok := out[name]
		if !ok {
			o = &osquery.InternalOptionInfo{Type: "string"}
			out[name] = o
		}
		o.Value = v
	}
	return out, nil
}

type flagDefault struct{ value, typ string }

// defaultFlags are osqueryd's defaults (on macOS) for the flags a client is
// likely to read back.
var defaultFlags = map[string]flagDefault{
	"extensions_socket":   {"/var/osquery/osquery.em", "string"},
	"extensions_timeout":  {"3", "string"},
	"extensions_interval": {"3", "string"},
	"database_path":       {"/var/osquery/osquery.db", "string"},
	"pidfile":             {"/var/osquery/osqueryd.pidfile", "string"},
	"config_path":         {"/var/osquery/osquery.conf", "string"},
	"logger_path":         {"/var/log/osquery/", "string"},
	"nullvalue":           {"", "string"},
	"disable_extensions":  {"false", "bool"},
	"utc":                 {"true", "bool"},
}

// RegisterExtension records an extension as osqueryd does: unique names, a
// new route UUID each time, known registries only. The simulator does not
// route queries to an extension's tables.
func (h *handler) RegisterExtension(_ context.Context, info *osquery.InternalExtensionInfo, reg osquery.ExtensionRegistry) (*osquery.ExtensionStatus, error) {
	if info == nil {
		info = &osquery.InternalExtensionInfo{}
	}
	if !sdkAtLeast("1.7.7", info.SdkVersion) {
		return status(codeFailed, "Incompatible extension SDK version"), nil
	}
	for name := range reg {
		if !knownRegistries[name] {
			return status(codeFailed, "Failed adding registry: Unknown registry: "+name), nil
		}
	}
	uuid, ok := h.sim.ext.add(info)
	if !ok {
		return status(codeFailed, "Duplicate extension registered"), nil
	}
	h.sim.log.Info("extension registered", "name", info.Name, "uuid", uuid)
	return &osquery.ExtensionStatus{Code: codeSuccess, Message: "OK", UUID: uuid}, nil
}

// DeregisterExtension forgets a registered extension.
func (h *handler) DeregisterExtension(_ context.Context, uuid osquery.ExtensionRouteUUID) (*osquery.ExtensionStatus, error) {
	if !h.sim.ext.remove(uuid) {
		return status(codeFailed, "No extension UUID found"), nil
	}
	h.sim.log.Info("extension deregistered", "uuid", uuid)
	return status(codeSuccess, "OK"), nil
}

// Query runs SQL: status 0 "OK" with the rows, or status 1 with SQLite's
// error message and no rows.
func (h *handler) Query(ctx context.Context, sql string) (*osquery.ExtensionResponse, error) {
	rows, err := h.sim.Query(ctx, sql)
	if err != nil {
		h.sim.log.Debug("query failed", "sql", sql, "err", err)
		return response(codeFailed, err.Error(), nil), nil
	}
	h.sim.log.Debug("query", "sql", sql, "rows", len(rows))
	return response(codeSuccess, "OK", rows), nil
}

// GetQueryColumns reports the result columns of sql, one {name: type} map
// per column, in order.
func (h *handler) GetQueryColumns(ctx context.Context, sql string) (*osquery.ExtensionResponse, error) {
	cols, err := h.sim.queryColumns(ctx, sql)
	if err != nil {
		return response(codeFailed, err.Error(), nil), nil
	}
	rows := make([]map[string]string, len(cols))
	for i, c := range cols {
		rows[i] = map[string]string{c.name: c.typ}
	}
	return response(codeSuccess, "OK", rows), nil
}

// extensionRegistry holds the extensions registered over the API.
type extensionRegistry struct {
	mu   sync.Mutex
	exts map[osquery.ExtensionRouteUUID]*osquery.InternalExtensionInfo
}

func (r *extensionRegistry) add(info *osquery.InternalExtensionInfo) (osquery.ExtensionRouteUUID, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exts == nil {
		r.exts = map[osquery.ExtensionRouteUUID]*osquery.InternalExtensionInfo{}
	}
	for _, e := range r.exts {
		if e.Name == info.Name {
			return 0, false
		}
	}
	// osqueryd draws route UUIDs from 1..65535, never reusing a live one.
	for {
		uuid := osquery.ExtensionRouteUUID(rand.IntN(65535) + 1)
		if _, taken := r.exts[uuid]; !taken {
			cp := *info
			r.exts[uuid] = &cp
			return uuid, true
		}
	}
}

func (r *extensionRegistry) remove(uuid osquery.ExtensionRouteUUID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.exts[uuid]; !ok {
		return false
	}
	delete(r.exts, uuid)
	return true
}

func (r *extensionRegistry) list() osquery.InternalExtensionList {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := osquery.InternalExtensionList{}
	for uuid, e := range r.exts {
		cp := *e
		out[uuid] = &cp
	}
	return out
}

// sdkAtLeast is osqueryd's check of an extension's SDK version against a
// required one: dotted chunks compared numerically, missing chunks (an
// empty version, as osquery-go sends) passing.
func sdkAtLeast(required, sdk string) bool {
	if required == "0.0.0" || sdk == "0.0.0" {
		return true
	}
	req := splitNonEmpty(required)
	for i, chunk := range splitNonEmpty(sdk) {
		if i >= len(req) {
			return true
		}
		have, errH := strconv.Atoi(chunk)
		want, errW := strconv.Atoi(req[i])
		if errH != nil || errW != nil {
			if chunk < req[i] {
				return false
			}
			continue
		}
		if have < want {
			return false
		}
		if have > want {
			return true
		}
	}
	return true
}

func splitNonEmpty(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ".") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
