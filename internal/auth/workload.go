package auth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"golang.org/x/oauth2"
)

// maxFederatedToken bounds the read of the federated token file; a
// projected service account token is a JWT of one or two kilobytes.
const maxFederatedToken = 1 << 20

const webhookFix = "the federated token file is mounted by the Azure Workload Identity webhook (which sets AZURE_FEDERATED_TOKEN_FILE): check that the pod has the label azure.workload.identity/use: \"true\" and its service account the annotation azure.workload.identity/client-id"

// workloadToken exchanges the projected service account token for an
// access token. The file is read for every request because kubelet
// replaces the token well before it expires.
func (s *Source) workloadToken(ctx context.Context) (*oauth2.Token, error) {
	tok, err := readFederatedToken(s.creds.FederatedTokenFile)
	if err != nil {
		return nil, err
	}
	params := url.Values{"client_assertion_type": {jwtBearer}, "client_assertion": {tok}}
	return s.clientCredentials(ctx, "", params, tok)
}

func readFederatedToken(name string) (string, error) {
	if name == "" {
		return "", &Error{Cause: "no federated token file is set", Fix: webhookFix}
	}
	b, err := os.ReadFile(name)
	var cause string
	fix := webhookFix
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cause = fmt.Sprintf("the federated token file %s does not exist", name)
	case errors.Is(err, fs.ErrPermission):
		cause = fmt.Sprintf("the federated token file %s is not readable (permission denied)", name)
		fix = "make the projected token readable by the user Fluent Bit runs as (the pod's securityContext runAsUser or fsGroup)"
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		cause = fmt.Sprintf("cannot read the federated token file %s: %v", name, err)
	case len(b) > maxFederatedToken:
		cause = fmt.Sprintf("the federated token file %s is larger than %d bytes, so it is not a service account token", name, maxFederatedToken)
	case strings.TrimSpace(string(b)) == "":
		cause = fmt.Sprintf("the federated token file %s is empty", name)
	}
	if cause != "" {
		return "", &Error{Cause: cause, Fix: fix}
	}
	return strings.TrimSpace(string(b)), nil
}
