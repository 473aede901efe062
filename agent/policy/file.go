package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// fileDoc is the policies YAML file the verifier also reads
// (examples/policies.yaml); `clearance-agent check --policies FILE` uses it
// to try policies on a machine before they are deployed.
type fileDoc struct {
	Policies []struct {
		ID          string   `yaml:"id"`
		Name        string   `yaml:"name"`
		Description string   `yaml:"description"`
		Query       string   `yaml:"query"`
		Platforms   []string `yaml:"platforms"`
		Resolution  string   `yaml:"resolution"`
		Required    bool     `yaml:"required"`
		Critical    bool     `yaml:"critical"`
		Interval    string   `yaml:"interval"`
	} `yaml:"policies"`
}

// LoadFile reads a policies YAML file into a PolicySet. The verifier is the
// authority on policy files; this reader checks only what running them needs.
func LoadFile(path string) (*agentv1.PolicySet, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ps := &agentv1.PolicySet{}
	seen := map[string]bool{}
	for i, p := range doc.Policies {
		if p.ID == "" || p.Query == "" {
			return nil, fmt.Errorf("%s: policy %d needs an id and a query", path, i+1)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("%s: policy %q is defined twice", path, p.ID)
		}
		seen[p.ID] = true
		pol := &agentv1.Policy{
			Id: p.ID, Name: p.Name, Description: p.Description, Query: p.Query,
			Platforms: p.Platforms, Resolution: p.Resolution, Required: p.Required, Critical: p.Critical,
		}
		if p.Interval != "" {
			d, err := time.ParseDuration(p.Interval)
			if err != nil {
				return nil, fmt.Errorf("%s: policy %q: interval %q is not a duration", path, p.ID, p.Interval)
			}
			pol.Interval = durationpb.New(d)
		}
		ps.Policies = append(ps.Policies, pol)
	}
	if len(ps.Policies) == 0 {
		return nil, fmt.Errorf("%s: no policies defined", path)
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ps)
	sum := sha256.Sum256(b)
	ps.Version = "file-" + hex.EncodeToString(sum[:8])
	return ps, nil
}
