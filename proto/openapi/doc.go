// Package openapi embeds the OpenAPI (Swagger 2.0) description of the drplane
// control API, generated from proto/drplane/v1 by protoc-gen-openapiv2, so a
// server can publish it (the coordinator serves it as /openapi.json).
//
// JSON field names in the spec are the proto field names (snake_case): serve
// the REST gateway with protojson UseProtoNames so the wire matches the spec.
package openapi
