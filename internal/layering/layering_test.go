package layering

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/clearance/clearance/"

// pkgInfo is what go list says of one package of the module.
type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list runs go list -deps over the module's packages (tests left out: the
// rules are about what ships).
func list(t *testing.T) map[string]pkgInfo {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to read the import graph: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-json=ImportPath,Imports,Deps", module+"...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkgInfo{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	if len(pkgs) < 50 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	return pkgs
}

// within returns the module-relative deps of p under any of the prefixes.
func within(p pkgInfo, prefixes ...string) []string {
	var hits []string
	for _, d := range p.Deps {
		rel, ok := strings.CutPrefix(d, module)
		if !ok {
			continue
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(rel, pre) {
				hits = append(hits, rel)
			}
		}
	}
	return hits
}

func TestImportRules(t *testing.T) {
	pkgs := list(t)
	for name, p := range pkgs {
		switch {
		case strings.HasPrefix(name, "pkg/"):
			if bad := within(p, "agent/", "verifier/", "internal/"); len(bad) > 0 {
				t.Errorf("%s is shared by both binaries but depends on %v", name, bad)
			}
		case strings.HasPrefix(name, "agent/"):
			if bad := within(p, "verifier/"); len(bad) > 0 {
				t.Errorf("%s depends on the verifier's %v", name, bad)
			}
		case strings.HasPrefix(name, "verifier/"):
			if bad := within(p, "agent/"); len(bad) > 0 {
				t.Errorf("%s depends on the agent's %v", name, bad)
			}
		}
		production := strings.HasPrefix(name, "agent/") || strings.HasPrefix(name, "verifier/")
		if production && !strings.HasPrefix(name, "agent/internal/fakeverifier") {
			if bad := within(p, "internal/"); len(bad) > 0 {
				t.Errorf("%s ships in a binary but depends on the test kits %v", name, bad)
			}
		}
	}

	idp, ok := pkgs["verifier/idp"]
	if !ok {
		t.Fatal("verifier/idp not found")
	}
	for _, d := range within(idp, "verifier/") {
		if d != "verifier/reason" && d != "verifier/secretfile" {
			t.Errorf("verifier/idp is the SAML protocol alone but depends on %s", d)
		}
	}

	for _, use := range []struct{ pkg, shared string }{
		{"agent/cmd/clearance-agent", "pkg/policy"},
		{"agent/config", "pkg/agentprefs"},
		{"verifier/profile", "pkg/agentprefs"},
		{"verifier/server", "pkg/policy"},
	} {
		p, ok := pkgs[use.pkg]
		if !ok {
			t.Errorf("%s not found", use.pkg)
			continue
		}
		if !slices.Contains(p.Deps, module+use.shared) {
			t.Errorf("%s does not read %s: the format would be defined twice", use.pkg, use.shared)
		}
	}
}
