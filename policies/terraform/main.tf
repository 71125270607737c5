locals {
  # The plain-text templates and the gateway specification one folder up are the single
  # source of truth, shared with `python -m genai_handler.policies`.
  kit = "${path.module}/.."

  gateway_compartment_ocid = coalesce(var.gateway_compartment_ocid, var.compartment_ocid)
  genai_compartment_ocid   = coalesce(var.genai_project_compartment_ocid, var.compartment_ocid)

  policy_values = {
    DYNAMIC_GROUP             = var.dynamic_group_name
    FUNCTION_COMPARTMENT_OCID = var.compartment_ocid
    GATEWAY_COMPARTMENT_OCID  = local.gateway_compartment_ocid
    GENAI_COMPARTMENT_OCID    = local.genai_compartment_ocid
  }

  # One statement or rule per non-comment line, as the renderer reads them.
  function_statements = [for line in split("\n", templatefile("${local.kit}/function-policy.txt", local.policy_values)) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]
  gateway_statements  = [for line in split("\n", templatefile("${local.kit}/gateway-policy.txt", local.policy_values)) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")]
  compartment_rule    = one([for line in split("\n", templatefile("${local.kit}/dynamic-group.txt", local.policy_values)) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")])
  function_rule       = one([for line in split("\n", templatefile("${local.kit}/dynamic-group-one-function.txt", { FUNCTION_OCID = oci_functions_function.this.id })) : trimspace(line) if trimspace(line) != "" && !startswith(trimspace(line), "#")])

  # Every GENAI_* setting; null ones are left out so the function uses its default.
  genai_settings = {
    GENAI_PROJECT_OCID           = var.genai_project_ocid
    GENAI_REGION                 = var.genai_region
    GENAI_BASE_URL               = var.genai_base_url
    GENAI_MODEL                  = var.genai_model
    GENAI_ALLOWED_MODELS         = var.genai_allowed_models
    GENAI_AUTH                   = var.genai_auth
    GENAI_COMPARTMENT_OCID       = var.genai_compartment_ocid
    GENAI_MAX_BODY_BYTES         = var.genai_max_body_bytes
    GENAI_MAX_INPUT_CHARS        = var.genai_max_input_chars
    GENAI_MAX_OUTPUT_TOKENS      = var.genai_max_output_tokens
    GENAI_MAX_RETRIES            = var.genai_max_retries
    GENAI_KEEPALIVE_SECONDS      = var.genai_keepalive_seconds
    GENAI_LOG_PROMPTS            = var.genai_log_prompts
    GENAI_ALLOW_STORED_RESPONSES = var.genai_allow_stored_responses
  }

  spec = jsondecode(templatefile("${local.kit}/apigateway-deployment.json", {
    FUNCTION_OCID       = oci_functions_function.this.id
    ISSUER              = var.jwt_issuer
    AUDIENCE            = var.jwt_audience
    JWKS_URI            = var.jwt_jwks_uri
    CORS_ALLOWED_ORIGIN = var.cors_allowed_origin
  }))
  auth = local.spec.requestPolicies.authentication
  rate = local.spec.requestPolicies.rateLimiting
  cors = local.spec.requestPolicies.cors
}

# --- Identity ------------------------------------------------------------------

resource "oci_identity_dynamic_group" "functions" {
  compartment_id = var.tenancy_ocid
  name           = var.dynamic_group_name
  description    = "Functions that call OCI Generative AI"
  matching_rule  = var.pin_dynamic_group_to_function ? local.function_rule : local.compartment_rule
}

resource "oci_identity_policy" "genai" {
  compartment_id = local.genai_compartment_ocid
  name           = "${var.dynamic_group_name}-genai"
  description    = "Functions in dynamic group ${var.dynamic_group_name} may call OCI Generative AI"
  statements     = local.function_statements
  depends_on     = [oci_identity_dynamic_group.functions]
}

resource "oci_identity_policy" "gateway" {
  compartment_id = var.compartment_ocid
  name           = "${var.dynamic_group_name}-gateway"
  description    = "API Gateway may invoke the functions in this compartment"
  statements     = local.gateway_statements
}

# --- Function ------------------------------------------------------------------

resource "oci_functions_application" "this" {
  compartment_id = var.compartment_ocid
  display_name   = "${var.name}-app"
  subnet_ids     = [var.function_subnet_ocid]
}

resource "oci_functions_function" "this" {
  application_id     = oci_functions_application.this.id
  display_name       = "${var.name}-handler"
  image              = var.function_image
  memory_in_mbs      = var.function_memory_in_mbs
  timeout_in_seconds = var.function_timeout_in_seconds
  config             = { for key, value in local.genai_settings : key => tostring(value) if value != null }
}

# --- API Gateway -----------------------------------------------------------------

resource "oci_apigateway_gateway" "this" {
  compartment_id = local.gateway_compartment_ocid
  display_name   = "${var.name}-gateway"
  endpoint_type  = var.gateway_endpoint_type
  subnet_id      = var.gateway_subnet_ocid
}

# The provider takes the specification as blocks, not JSON: every field below is read
# from ../apigateway-deployment.json (tests/test_deploy_kit.py proves none is missed).
resource "oci_apigateway_deployment" "this" {
  compartment_id = local.gateway_compartment_ocid
  gateway_id     = oci_apigateway_gateway.this.id
  display_name   = "${var.name}-deployment"
  path_prefix    = var.path_prefix

  specification {
    request_policies {
      authentication {
        type                        = local.auth.type
        is_anonymous_access_allowed = local.auth.isAnonymousAccessAllowed
        token_header                = local.auth.tokenHeader
        token_auth_scheme           = local.auth.tokenAuthScheme
        issuers                     = local.auth.issuers
        audiences                   = local.auth.audiences
        max_clock_skew_in_seconds   = local.auth.maxClockSkewInSeconds

        public_keys {
          type                        = local.auth.publicKeys.type
          uri                         = local.auth.publicKeys.uri
          is_ssl_verify_disabled      = local.auth.publicKeys.isSslVerifyDisabled
          max_cache_duration_in_hours = local.auth.publicKeys.maxCacheDurationInHours
        }
      }

      rate_limiting {
        rate_in_requests_per_second = local.rate.rateInRequestsPerSecond
        rate_key                    = local.rate.rateKey
      }

      cors {
        allowed_origins              = local.cors.allowedOrigins
        allowed_methods              = local.cors.allowedMethods
        allowed_headers              = local.cors.allowedHeaders
        exposed_headers              = local.cors.exposedHeaders
        is_allow_credentials_enabled = local.cors.isAllowCredentialsEnabled
        max_age_in_seconds           = local.cors.maxAgeInSeconds
      }
    }

    dynamic "routes" {
      for_each = local.spec.routes
      content {
        path    = routes.value.path
        methods = routes.value.methods

        request_policies {
          authorization {
            type = routes.value.requestPolicies.authorization.type
          }
        }

        backend {
          type        = routes.value.backend.type
          function_id = routes.value.backend.functionId
        }
      }
    }
  }

  depends_on = [oci_identity_policy.gateway]
}
