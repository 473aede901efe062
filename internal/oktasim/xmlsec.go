package oktasim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/beevik/etree"
)

// ErrNoXMLSec1 means the xmlsec1 binary is not on PATH (Debian: apt-get
// install xmlsec1; scripts/deps.sh does it).
var ErrNoXMLSec1 = errors.New("oktasim: xmlsec1 not found on PATH (install the Debian package xmlsec1)")

// XPaths of the two signatures Okta relies on. xmlsec1 starts at the node
// --node-xpath selects and verifies the first Signature it finds there, so
// pointing it at each Signature element checks each one on its own.
const (
	responseSigXPath  = "/*[local-name()='Response' and namespace-uri()='" + NSProtocol + "']/*[local-name()='Signature' and namespace-uri()='" + NSDSig + "']"
	assertionSigXPath = "/*[local-name()='Response' and namespace-uri()='" + NSProtocol + "']/*[local-name()='Assertion' and namespace-uri()='" + NSAssertion + "']/*[local-name()='Signature' and namespace-uri()='" + NSDSig + "']"
)

// XMLSec1Args returns the xmlsec1 arguments XMLSec1Verify runs for one
// signature: trust only the key of certFile (KeyInfo certificates are not
// used to pick or trust a key), resolve only same-document references, and
// treat Response/@ID and Assertion/@ID as XML IDs.
func XMLSec1Args(certFile, sigXPath, docFile string) []string {
	return []string{
		"--verify",
		"--enabled-key-data", "key-name,rsa",
		"--enabled-reference-uris", "same-doc",
		"--pubkey-cert-pem", certFile,
		"--id-attr:ID", NSProtocol + ":Response",
		"--id-attr:ID", NSAssertion + ":Assertion",
		"--node-xpath", sigXPath,
		docFile,
	}
}

// XMLSec1Verify checks, with xmlsec1, the Response signature and then the
// Assertion signature of a SAML Response (raw XML, not base64) against the
// PEM certificate idpCertPEM, and that each signature references its own
// element's ID (xmlsec1 verifies whatever the Reference points at).
func XMLSec1Verify(responseXML []byte, idpCertPEM []byte) error {
	return XMLSec1VerifySigned(responseXML, idpCertPEM, RequireBoth)
}

// XMLSec1VerifySigned is XMLSec1Verify for a response that must carry the
// signatures need requires: those must be there, and every signature there
// must reference its own element and verify.
func XMLSec1VerifySigned(responseXML []byte, idpCertPEM []byte, need Signatures) error {
	bin, err := exec.LookPath("xmlsec1")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoXMLSec1, err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(responseXML); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != NSProtocol {
		return fmt.Errorf("%w: root is not samlp:Response", ErrMalformed)
	}
	assertion := child(root, NSAssertion, "Assertion")
	if assertion == nil {
		return fmt.Errorf("%w: no Assertion child", ErrMalformed)
	}
	if err := checkSignatures(root, assertion, need); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "oktasim-xmlsec1-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	docFile := filepath.Join(dir, "response.xml")
	certFile := filepath.Join(dir, "idp.pem")
	if err := os.WriteFile(docFile, responseXML, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(certFile, idpCertPEM, 0o600); err != nil {
		return err
	}

	for _, s := range []struct {
		what, xpath string
		there       bool
	}{
		{"Response", responseSigXPath, hasSignature(root)},
		{"Assertion", assertionSigXPath, hasSignature(assertion)},
	} {
		if !s.there {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, XMLSec1Args(certFile, s.xpath, docFile)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			return fmt.Errorf("%w: xmlsec1 rejected the %s signature: %w: %s", ErrSignature, s.what, err, strings.TrimSpace(out.String()))
		}
	}
	return nil
}
