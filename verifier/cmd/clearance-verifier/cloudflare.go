package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/cloudflare"
	"github.com/clearance/clearance/verifier/config"
)

// cloudflareCmd prints what to set up in Cloudflare Zero Trust.
func (a *app) cloudflareCmd() *cli.Command {
	return &cli.Command{
		Name:    "cloudflare",
		Summary: "print what to set up in Cloudflare Zero Trust to use this verifier as a device posture provider",
		Commands: []*cli.Command{{
			Name:    "setup",
			Summary: "print the Zero Trust dashboard values and the Terraform for the custom device posture integration",
			Doc: "Prints, in the dashboard's order, what to create in Cloudflare Zero Trust so that Cloudflare " +
				"scores Macs by this verifier's decision: a service token, an Access application with a Service " +
				"Auth policy in front of the posture endpoint, the custom device posture integration (custom_s2s) " +
				"and a device posture rule. --terraform prints the same as Terraform.\n\n" +
				"  clearance-verifier cloudflare setup --cloudflare-team acme \\\n" +
				"    --api-url https://clearance-posture.example.com/cloudflare/v1/posture",
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				// The AUD tag comes from step 2 of what this prints.
				b := config.Bind(fs, "public-url", "http-listen", "cloudflare-team", "cloudflare-aud", "cloudflare-score-compliant", "cloudflare-score-warn").AUDLater()
				fs.Group("Output")
				apiURL := fs.String("api-url", "", "the posture endpoint's URL as Cloudflare reaches it: the Access application's hostname + "+cloudflare.Path+" (default: the --public-url host with the --http-listen port)")
				interval := fs.String("interval", "10m", "how often Cloudflare asks for scores (the integration's polling frequency)")
				minScore := fs.Int("min-score", 0, "the score the posture rule requires (default: the --cloudflare-score-warn score, so devices with warnings pass)")
				terraform := fs.Bool("terraform", false, "print only the Terraform (Cloudflare provider v5)")
				return func(context.Context, []string) error {
					cfg, err := b.Resolve(a.getenv)
					if err != nil {
						return err
					}
					v := cloudflareValues{
						Team: cfg.CloudflareTeam, AUD: cfg.CloudflareAUD, APIURL: *apiURL, Interval: *interval,
						MinScore: *minScore, Scores: cfg.CloudflareScores(),
					}
					if v.APIURL == "" {
						v.APIURL = cfg.CloudflareAPIURL()
					}
					if v.MinScore == 0 {
						v.MinScore = v.Scores.Warning
					}
					if err := v.check(); err != nil {
						return cli.Usagef("%v", err)
					}
					if *terraform {
						return writeCloudflareTerraform(a.stdout, v)
					}
					return writeCloudflareGuide(a.stdout, v)
				}
			},
		}},
	}
}

// cloudflareValues is everything the guide and the Terraform print.
type cloudflareValues struct {
	Team     string // issuer form, https://<team>.cloudflareaccess.com; empty if not set
	AUD      string
	APIURL   string
	Interval string
	MinScore int
	Scores   cloudflare.Scores
}

func (v cloudflareValues) check() error {
	u, err := url.Parse(v.APIURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--api-url %q is not an https:// URL", v.APIURL)
	}
	if !strings.HasSuffix(u.Path, cloudflare.Path) {
		return fmt.Errorf("--api-url %q must end in %s, the path the verifier serves", v.APIURL, cloudflare.Path)
	}
	if v.MinScore < 1 || v.MinScore > 100 {
		return fmt.Errorf("--min-score %d is not between 1 and 100", v.MinScore)
	}
	if v.Interval == "" || strings.ContainsAny(v.Interval, " \"\n") {
		return fmt.Errorf("--interval %q is not a duration such as 10m or 1h", v.Interval)
	}
	return nil
}

// host is the Access application's domain: the api_url without its scheme.
func (v cloudflareValues) domain() string {
	u, _ := url.Parse(v.APIURL)
	return u.Host + u.Path
}

func writeCloudflareGuide(w io.Writer, v cloudflareValues) error {
	d := &doc{}
	p := d.p
	team := v.Team
	if team == "" {
		team = "https://<team>.cloudflareaccess.com (not set: pass --cloudflare-team)"
	}
	p("Cloudflare Zero Trust: Clearance as a custom device posture provider\n\n")
	if u, _ := url.Parse(v.APIURL); isLocalHost(u.Hostname()) {
		p("WARNING: the Rest API URL below names %s, which Cloudflare cannot reach.\n", v.APIURL)
		p("         Set --api-url to the Access application's https:// hostname + %s, then run this again.\n\n", cloudflare.Path)
	}
	p("Cloudflare calls the verifier's posture endpoint through Cloudflare Access with a service\n")
	p("token; the verifier checks Access's token and answers a score per device (0 to 100):\n")
	p("  %3d  every policy that counts passes on fresh posture\n", v.Scores.Compliant)
	p("  %3d  allowed, with warnings: a policy that does not count for access fails, or a required\n", v.Scores.Warning)
	p("       one fails but the rollout lets the device through (monitor, warn, a grace period,\n")
	p("       an exemption): a rule of >= %d lets only compliant devices through, rollout or not\n", v.Scores.Compliant)
	p("    0  denied: a failing required policy, stale posture, revoked or unknown device\n\n")

	p("1. Access > Service Auth > Service Tokens > Create Service Token\n")
	p("   Service token name:   Clearance device posture\n")
	p("   Keep the Client ID and Client Secret for step 3.\n\n")

	p("2. Access > Applications > Add an application > Self-hosted\n")
	p("   Application name:     Clearance device posture\n")
	p("   Application domain:   %s\n", v.domain())
	p("   Policy:               Action \"Service Auth\", Include \"Service Token\" = Clearance device posture\n")
	p("   Route the domain to the verifier's --http-listen (e.g. a Cloudflare Tunnel to\n")
	p("   https://<verifier>:<http-listen port>, with the verifier's ca.pem as origin CA).\n")
	p("   Then copy the application's Application Audience (AUD) Tag:\n")
	if v.AUD == "" {
		p("   --cloudflare-aud      <the AUD tag>   (not set yet)\n\n")
	} else {
		p("   --cloudflare-aud      %s\n\n", v.AUD)
	}

	p("3. Settings > WARP Client > Device posture providers > Add new > Custom service provider\n")
	p("   Name:                 Clearance\n")
	p("   Client ID:            <the service token's Client ID>\n")
	p("   Client Secret:        <the service token's Client Secret>\n")
	p("   Rest API URL:         %s\n", v.APIURL)
	p("   Polling frequency:    %s\n\n", v.Interval)

	p("4. Settings > WARP Client > Device posture > Service provider checks > Add new\n")
	p("   Select provider:      Clearance\n")
	p("   Name:                 Clearance: Mac passes its security policies\n")
	p("   Operator / Score:     >= %d\n", v.MinScore)
	p("   Then require the check in your Access and Gateway policies.\n\n")

	p("5. Start the verifier with\n")
	p("   --cloudflare-team     %s\n", team)
	p("   --cloudflare-aud      <the AUD tag from step 2>\n")
	p("   and, if Cloudflare knows some Macs only by hostname, --cloudflare-match-hostname.\n\n")
	p("Cloudflare names Macs by serial number; s2s_id in each answer is the Clearance device id,\n")
	p("empty when no enrolled Mac matched. Every answer is in the decision log (source cloudflare).\n")
	return d.writeTo(w)
}

func writeCloudflareTerraform(w io.Writer, v cloudflareValues) error {
	d := &doc{}
	p := d.p
	p("# Clearance as a Cloudflare Zero Trust custom device posture provider (custom_s2s).\n")
	p("# From 'clearance-verifier cloudflare setup --terraform'. After 'terraform apply', start the\n")
	p("# verifier with --cloudflare-team and --cloudflare-aud set to the output below.\n\n")
	p("variable \"cloudflare_account_id\" {\n  type = string\n}\n\n")
	p("resource \"cloudflare_zero_trust_access_service_token\" \"clearance\" {\n")
	p("  account_id = var.cloudflare_account_id\n")
	p("  name       = \"Clearance device posture\"\n")
	p("}\n\n")
	p("resource \"cloudflare_zero_trust_access_policy\" \"clearance\" {\n")
	p("  account_id = var.cloudflare_account_id\n")
	p("  name       = \"Clearance device posture service token\"\n")
	p("  decision   = \"non_identity\" # Service Auth\n")
	p("  include = [{\n")
	p("    service_token = { token_id = cloudflare_zero_trust_access_service_token.clearance.id }\n")
	p("  }]\n")
	p("}\n\n")
	p("resource \"cloudflare_zero_trust_access_application\" \"clearance\" {\n")
	p("  account_id = var.cloudflare_account_id\n")
	p("  name       = \"Clearance device posture\"\n")
	p("  type       = \"self_hosted\"\n")
	p("  domain     = %s\n", hclString(v.domain()))
	p("  policies = [{\n")
	p("    id         = cloudflare_zero_trust_access_policy.clearance.id\n")
	p("    precedence = 1\n")
	p("  }]\n")
	p("}\n\n")
	p("resource \"cloudflare_zero_trust_device_posture_integration\" \"clearance\" {\n")
	p("  account_id = var.cloudflare_account_id\n")
	p("  name       = \"Clearance\"\n")
	p("  type       = \"custom_s2s\"\n")
	p("  interval   = %s\n", hclString(v.Interval))
	p("  config = {\n")
	p("    api_url              = %s\n", hclString(v.APIURL))
	p("    access_client_id     = cloudflare_zero_trust_access_service_token.clearance.client_id\n")
	p("    access_client_secret = cloudflare_zero_trust_access_service_token.clearance.client_secret\n")
	p("  }\n")
	p("}\n\n")
	p("# Scores: %d compliant, %d allowed with warnings, 0 denied.\n", v.Scores.Compliant, v.Scores.Warning)
	p("resource \"cloudflare_zero_trust_device_posture_rule\" \"clearance\" {\n")
	p("  account_id = var.cloudflare_account_id\n")
	p("  name       = \"Clearance: Mac passes its security policies\"\n")
	p("  type       = \"custom_s2s\"\n")
	p("  input = {\n")
	p("    connection_id = cloudflare_zero_trust_device_posture_integration.clearance.id\n")
	p("    operator      = \">=\"\n")
	p("    score         = %d\n", v.MinScore)
	p("  }\n")
	p("}\n\n")
	p("output \"cloudflare_aud\" {\n")
	p("  description = \"--cloudflare-aud\"\n")
	p("  value       = cloudflare_zero_trust_access_application.clearance.aud\n")
	p("}\n")
	return d.writeTo(w)
}
