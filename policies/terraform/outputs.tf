output "endpoint_url" {
  description = "POST JSON prompts here with `Authorization: Bearer <token>`."
  value       = "${oci_apigateway_deployment.this.endpoint}/chat"
}

output "responses_url" {
  description = "The OpenAI-style route (POST {\"input\": ..., \"model\": ...})."
  value       = "${oci_apigateway_deployment.this.endpoint}/v1/responses"
}

output "function_ocid" {
  description = "OCID of the function (for `fn invoke` or the one-function dynamic group)."
  value       = oci_functions_function.this.id
}

output "application_ocid" {
  description = "OCID of the Functions application."
  value       = oci_functions_application.this.id
}

output "dynamic_group_matching_rule" {
  description = "The matching rule applied, to compare with `python -m genai_handler.policies`."
  value       = oci_identity_dynamic_group.functions.matching_rule
}

output "policy_statements" {
  description = "Every statement granted to the function and the gateway."
  value       = concat(oci_identity_policy.genai.statements, oci_identity_policy.gateway.statements)
}
