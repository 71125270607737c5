# --- Where things go ---------------------------------------------------------

variable "region" {
  description = "OCI region of the function and the gateway, e.g. us-chicago-1."
  type        = string
}

variable "oci_config_profile" {
  description = "Profile in ~/.oci/config that Terraform authenticates with."
  type        = string
  default     = "DEFAULT"
}

variable "tenancy_ocid" {
  description = "Tenancy OCID: dynamic groups always live in the tenancy (Default identity domain)."
  type        = string
}

variable "compartment_ocid" {
  description = "Compartment of the Functions application and function."
  type        = string
}

variable "gateway_compartment_ocid" {
  description = "Compartment of the API gateway. Empty: compartment_ocid."
  type        = string
  default     = ""
}

variable "genai_project_compartment_ocid" {
  description = "Compartment that holds the Generative AI project; the function may use generative-ai-family only there. Empty: compartment_ocid."
  type        = string
  default     = ""
}

variable "function_subnet_ocid" {
  description = "Subnet of the Functions application. It needs egress to the Generative AI endpoint (NAT or service gateway)."
  type        = string
}

variable "gateway_subnet_ocid" {
  description = "Subnet of the API gateway: a public subnet with ingress on TCP 443 for a PUBLIC gateway."
  type        = string
}

variable "gateway_endpoint_type" {
  description = "PUBLIC (reachable from the internet) or PRIVATE (inside the VCN only)."
  type        = string
  default     = "PUBLIC"
}

# --- Names -------------------------------------------------------------------

variable "name" {
  description = "Prefix of every name: the application, the function, the gateway, the policies."
  type        = string
  default     = "genai"
}

variable "dynamic_group_name" {
  description = "Name of the function's dynamic group. Policies refer to it by this name."
  type        = string
  default     = "genai-functions"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_.-]{0,89}$", var.dynamic_group_name))
    error_message = "Letters, digits, '.', '_' or '-', at most 90, starting with a letter."
  }
}

variable "pin_dynamic_group_to_function" {
  description = "true: the dynamic group matches this one function (resource.id); false: every function in compartment_ocid."
  type        = bool
  default     = false
}

# --- The function ------------------------------------------------------------

variable "function_image" {
  description = "Image pushed by `fn deploy` or `docker push`, e.g. ord.ocir.io/<namespace>/genai/genai-handler:0.0.1."
  type        = string
}

variable "function_memory_in_mbs" {
  description = "Function memory (func.yaml: memory)."
  type        = number
  default     = 256
}

variable "function_timeout_in_seconds" {
  description = "Function timeout (func.yaml: timeout). The gateway waits at most this long too."
  type        = number
  default     = 60
}

# Function settings: one variable per GENAI_* setting. null (the default) leaves the
# setting out of the function's config, so the function applies its own default (the
# value quoted in each description): Terraform and the code never disagree.

variable "genai_project_ocid" {
  description = "GENAI_PROJECT_OCID: the Generative AI project (required)."
  type        = string
}

variable "genai_region" {
  description = "GENAI_REGION: region of the Generative AI endpoint. Function default: the function's own region."
  type        = string
  default     = null
}

variable "genai_base_url" {
  description = "GENAI_BASE_URL: override of the endpoint URL. Function default: derived from the region."
  type        = string
  default     = null
}

variable "genai_model" {
  description = "GENAI_MODEL: the model used when a request names none. Function default: xai.grok-4-1-fast-reasoning."
  type        = string
  default     = null
}

variable "genai_allowed_models" {
  description = "GENAI_ALLOWED_MODELS: comma-separated models a caller may ask for. Function default: only GENAI_MODEL."
  type        = string
  default     = null
}

variable "genai_auth" {
  description = "GENAI_AUTH: resource_principal (function default; the right one in OCI Functions), instance_principal, user_principal, session or api_key."
  type        = string
  default     = null
}

variable "genai_compartment_ocid" {
  description = "GENAI_COMPARTMENT_OCID: sent as opc-compartment-id. Function default: not sent."
  type        = string
  default     = null
}

variable "genai_max_body_bytes" {
  description = "GENAI_MAX_BODY_BYTES: largest request body accepted. Function default: 1048576."
  type        = number
  default     = null
}

variable "genai_max_input_chars" {
  description = "GENAI_MAX_INPUT_CHARS: longest prompt accepted. Function default: 32000."
  type        = number
  default     = null
}

variable "genai_max_output_tokens" {
  description = "GENAI_MAX_OUTPUT_TOKENS: cap on max_output_tokens. Function default: see the README's settings table."
  type        = number
  default     = null
}

variable "genai_max_retries" {
  description = "GENAI_MAX_RETRIES: retries of a failed upstream call. Function default: see the README's settings table."
  type        = number
  default     = null
}

variable "genai_keepalive_seconds" {
  description = "GENAI_KEEPALIVE_SECONDS: how long idle upstream connections are kept. Function default: see the README's settings table."
  type        = number
  default     = null
}

variable "genai_log_prompts" {
  description = "GENAI_LOG_PROMPTS: log prompt text (keep false in production). Function default: false."
  type        = bool
  default     = null
}

variable "genai_allow_stored_responses" {
  description = "GENAI_ALLOW_STORED_RESPONSES: let callers ask the service to store responses. Function default: false."
  type        = bool
  default     = null
}

# --- The gateway deployment ----------------------------------------------------

variable "path_prefix" {
  description = "Deployment path prefix; the routes are <prefix>/chat and <prefix>/v1/responses."
  type        = string
  default     = "/genai"
}

variable "jwt_issuer" {
  description = "JWT issuer the gateway accepts, e.g. https://identity.oraclecloud.com/ for an OCI IAM identity domain."
  type        = string
}

variable "jwt_audience" {
  description = "JWT audience the gateway requires (the primary audience of the identity domain's resource app)."
  type        = string
}

variable "jwt_jwks_uri" {
  description = "URL of the issuer's JSON Web Key Set, e.g. https://idcs-<id>.identity.oraclecloud.com/admin/v1/SigningCert/jwk."
  type        = string
}

variable "cors_allowed_origin" {
  description = "Browser origin allowed to call the API, e.g. https://app.example.com."
  type        = string
}
