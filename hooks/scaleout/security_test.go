package scaleout_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// writePEM writes der as a PEM block of kind to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testPKI makes a CA and, signed by it, a server certificate for 127.0.0.1 and a client
// certificate; it returns the files' paths.
func testPKI(t *testing.T) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	dir := t.TempDir()
	issue := func(name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
		tmpl.Subject = pkix.Name{CommonName: name}
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	caCert, caKey, ca, _ := issue("ca", &x509.Certificate{IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	_, _, serverCert, serverKey = issue("server", &x509.Certificate{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, caCert, caKey)
	_, _, clientCert, clientKey = issue("client", &x509.Certificate{
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, caCert, caKey)
	return
}

// testAccounts makes an operator with one JetStream-enabled account and a user of it; it
// returns the operator, the resolver holding the accounts, the system account and the
// user's credentials file.
func testAccounts(t *testing.T) (*jwt.OperatorClaims, server.AccountResolver, string, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, err := op.PublicKey()
	must(err)
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	must(err)
	operator, err := jwt.DecodeOperatorClaims(opJWT)
	must(err)
	acc, err := nkeys.CreateAccount()
	must(err)
	accPub, err := acc.PublicKey()
	must(err)
	ac := jwt.NewAccountClaims(accPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	must(err)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(accPub, accJWT))
	sys, err := nkeys.CreateAccount() // JetStream needs a system account
	must(err)
	sysPub, err := sys.PublicKey()
	must(err)
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(op)
	must(err)
	must(resolver.Store(sysPub, sysJWT))
	user, err := nkeys.CreateUser()
	must(err)
	userPub, err := user.PublicKey()
	must(err)
	userJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
	must(err)
	seed, err := user.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	path := filepath.Join(t.TempDir(), "user.creds")
	must(os.WriteFile(path, creds, 0o600))
	return operator, resolver, sysPub, path
}

// TestNATSOverTLSWithCredentials: against a NATS server that requires TLS with client
// certificates and a user's credentials (operator mode), the primary (--nats with
// --nats-tls-ca, --nats-tls-cert/--nats-tls-key and --nats-creds) publishes its codes and an
// edge with the same flags redirects and has its click ingested; a connection missing the CA,
// the client certificate or the credentials is refused, and a certificate without its key is
// a flag error.
func TestNATSOverTLSWithCredentials(t *testing.T) {
	ca, serverCert, serverKey, clientCert, clientKey := testPKI(t)
	operator, resolver, system, creds := testAccounts(t)
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: serverCert, KeyFile: serverKey, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, TLS: true, TLSVerify: true, TLSConfig: tlsConfig, TLSTimeout: 2,
		TrustedOperators: []*jwt.OperatorClaims{operator}, AccountResolver: resolver, SystemAccount: system})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	url := "tls://" + srv.Addr().String()
	security := scaleout.Security{Creds: creds, TLSCA: ca, TLSCert: clientCert, TLSKey: clientKey}

	for name, s := range map[string]scaleout.Security{
		"no CA":                 {Creds: creds, TLSCert: clientCert, TLSKey: clientKey},
		"no client certificate": {Creds: creds, TLSCA: ca},
		"no credentials":        {TLSCA: ca, TLSCert: clientCert, TLSKey: clientKey},
	} {
		opts, err := s.Options()
		if err != nil {
			t.Fatal(err)
		}
		if nc, _, err := scaleout.Connect(url, "test-refused", opts...); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		}
	}
	if _, err := (scaleout.Security{TLSCert: clientCert}).Options(); err == nil || !strings.Contains(err.Error(), "--nats-tls-key") {
		t.Errorf("a certificate without its key: %v", err)
	}

	app := fx.App(t)
	t.Cleanup(app.Cleanup)
	p := scaleout.Register(app, &cobra.Command{})
	pbatest.Serve(t, app)
	if err := p.Start(context.Background(), scaleout.Options{URLs: url, Security: security}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	opts, err := security.Options()
	if err != nil {
		t.Fatal(err)
	}
	edge, js := connectEdge(t, url, fx.Config, opts...)
	c := &cluster{app: app, primary: p, js: js, edge: edge}
	aff, err := app.FindRecordById(collections.Affiliates, fx.A.ID)
	if err != nil {
		t.Fatal(err)
	}
	res := c.get("/r/" + aff.GetString(collections.FieldCode))
	ck := cookie(res, hooks.ClickCookie)
	if res.StatusCode != http.StatusFound || ck == nil {
		t.Fatalf("redirect over TLS: %d", res.StatusCode)
	}
	waitAllIngested(t, js)
	if _, err := app.FindRecordById(collections.Clicks, ck.Value); err != nil {
		t.Fatalf("the click answered over TLS is not stored: %v", err)
	}

	// The embedded server has neither: the flags are refused there.
	if err := scaleout.Register(fx.App(t), &cobra.Command{}).Start(context.Background(), scaleout.Options{Embedded: "127.0.0.1:0", Security: security}); err == nil {
		t.Error("--nats-embedded with --nats-tls-ca started")
	}
}
