package scep

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"
)

// reply answers env with a CertRep signed by the RA. A SUCCESS carries
// issued in a degenerate PKCS#7, encrypted to the request's signer.
func (h *Handler) reply(w http.ResponseWriter, log *slog.Logger, env *envelope, status smscep.PKIStatus, info smscep.FailInfo, issued *x509.Certificate) {
	b, err := h.certRep(env, status, info, issued)
	if err != nil {
		// Only a broken RA key or a failing random source get here; for a
		// SUCCESS the certificate is recorded but never delivered, and the
		// Mac retries.
		log.Error("scep reply failed", "status", string(status), "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentTypePKIMsg)
	_, _ = w.Write(b)
}

// certRep builds the CertRep itself, rather than with smallstep/scep's
// Success and Fail, to choose what they do not: SHA-256 (their default is
// SHA-1), a fresh senderNonce of our own, and encryption to the signer only.
func (h *Handler) certRep(env *envelope, status smscep.PKIStatus, info smscep.FailInfo, issued *x509.Certificate) ([]byte, error) {
	var content []byte
	if status == smscep.SUCCESS {
		deg, err := smscep.DegenerateCertificates([]*x509.Certificate{issued})
		if err != nil {
			return nil, fmt.Errorf("encoding certificate: %w", err)
		}
		if content, err = pkcs7.Encrypt(deg, []*x509.Certificate{env.signer}); err != nil {
			return nil, fmt.Errorf("encrypting certificate: %w", err)
		}
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: env.transactionID},
		{Type: oidMessageType, Value: string(smscep.CertRep)},
		{Type: oidPKIStatus, Value: string(status)},
		{Type: oidSenderNonce, Value: nonce},
		{Type: oidRecipientNonce, Value: env.senderNonce},
	}
	if status == smscep.FAILURE {
		attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfo, Value: string(info)})
	}
	if err := sd.AddSigner(h.ra.Cert, h.ra.Key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, fmt.Errorf("signing CertRep: %w", err)
	}
	return sd.Finish()
}
