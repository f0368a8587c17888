// Package docs holds stepwise's documents that the programs themselves
// serve: the OpenAPI description of the HTTP API, embedded so that the
// API answers /openapi.json from the very file the tests hold it to.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml, the OpenAPI 3.0.3 description of the
// management and execution API (functions/api).
//
//go:embed openapi.yaml
var OpenAPI string
