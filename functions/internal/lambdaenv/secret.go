package lambdaenv

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/seal"
)

// readSecretKey reads the key that seals provider keys from the Secrets
// Manager secret id (an ARN or a name, STEPWISE_SECRET_KEY_ARN): its
// SecretString, written as STEPWISE_SECRET_KEY takes it (32 bytes in hex
// or base64). Reading it at cold start rather than having CloudFormation
// resolve it into the environment keeps the key out of the function's
// configuration, which more people may read than the secret. Every error
// starts with the variable and names the secret; none repeats its value.
func readSecretKey(ctx context.Context, client *secretsmanager.Client, id string) ([]byte, error) {
	out, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		code, why := secretError(err)
		return nil, core.WrapError(code, err, "%s: secret %q %s", VarSecretKeyARN, id, why)
	}
	if out.SecretString == nil {
		return nil, core.Errorf(core.EINVALID, "%s: secret %q has no SecretString: store the key as text, %d bytes in hex or base64",
			VarSecretKeyARN, id, seal.KeySize)
	}
	// A key stored from a file often ends in a newline.
	key, err := seal.ParseKey(strings.TrimSpace(*out.SecretString))
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "%s: secret %q holds no usable key", VarSecretKeyARN, id)
	}
	return key, nil
}

// secretError returns the code of a failed GetSecretValue and what to say
// about the secret.
func secretError(err error) (code, why string) {
	var (
		send *smithyhttp.RequestSendError
		api  smithy.APIError
		resp *smithyhttp.ResponseError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return core.ETIMEOUT, "could not be read before the cold start's deadline"
	case errors.As(err, &send):
		return core.EUNAVAILABLE, "could not be read: Secrets Manager cannot be reached"
	}
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ResourceNotFoundException":
			return core.ENOTFOUND, "does not exist in this account and region"
		case "AccessDeniedException":
			return core.EFORBIDDEN, "may not be read by this function's role (it needs secretsmanager:GetSecretValue on the secret)"
		case "DecryptionFailure":
			return core.EFORBIDDEN, "cannot be decrypted: the role needs kms:Decrypt on the secret's KMS key"
		case "InvalidRequestException", "InvalidParameterException", "ValidationException":
			return core.EINVALID, "cannot be read (is it scheduled for deletion, or the id malformed?)"
		case "InternalServiceError", "ThrottlingException":
			return core.EUNAVAILABLE, "could not be read: Secrets Manager is failing or throttling; try again"
		}
	}
	if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
		return core.EUNAVAILABLE, "could not be read: Secrets Manager is failing; try again"
	}
	return core.EINTERNAL, "could not be read"
}
