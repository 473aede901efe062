// Package layering holds no code: its test pins the import rules between the
// tree's parts, so that a change breaking one fails make test instead of a
// later review.
//
//   - pkg/ (rules both binaries share) imports nothing of agent/, verifier/
//     or internal/;
//   - agent/ and verifier/ import nothing of each other, and their
//     production packages nothing of internal/ (test kits and stand-ins);
//   - verifier/idp is the SAML protocol: of verifier/ it imports only the
//     refusal codes (reason) and the safe reading of its key (secretfile);
//   - the agent and the verifier read the policy file format and the
//     managed-preferences keys through pkg/policy and pkg/agentprefs.
package layering
