"""OpenAPI description of the API-key authentication, for drf-spectacular."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tracefoundry.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer tf_…` (or `x-tracefoundry-key`).",
        }


class LockoutBasicScheme(OpenApiAuthenticationExtension):
    target_class = "tracefoundry.lockout.LockoutBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Username and password; too many failures lock the user out from "
                           "that address for a while (401 `locked_out`, with `Retry-After`).",
        }
