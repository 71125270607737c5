output "endpoint_url" {
  description = "POST JSON prompts here with `Authorization: Bearer <token>`."
  value       = local.function_count == 1 ? "${one(oci_apigateway_deployment.this[*].endpoint)}/chat" : "not deployed yet: run make image, then set function_image"
}

output "responses_url" {
  description = "The OpenAI-style route (POST {\"input\": ..., \"model\": ...})."
  value       = local.function_count == 1 ? "${one(oci_apigateway_deployment.this[*].endpoint)}/v1/responses" : "not deployed yet"
}

output "curl_command" {
  description = "A ready call; TOKEN is an access token from your issuer (docs/deploy.md, step 9)."
  value       = local.function_count == 1 ? "curl -sS '${one(oci_apigateway_deployment.this[*].endpoint)}/chat' -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{\"prompt\": \"Say hello in five words.\"}'" : "not deployed yet"
}

output "function_ocid" {
  description = "OCID of the function (for `fn invoke` or the one-function dynamic group)."
  value       = local.function_ocid == null ? "not deployed yet" : local.function_ocid
}

output "application_ocid" {
  description = "OCID of the Functions application."
  value       = oci_functions_application.this.id
}

output "genai_project_ocid" {
  description = "The Generative AI project the function calls (GENAI_PROJECT_OCID)."
  value       = local.genai_project_ocid
}

output "image_repository" {
  description = "Where `make image` pushes: give the printed <repository>:<version> as function_image."
  value       = local.image_repository
}

output "make_image_command" {
  description = "Builds and pushes the function image with the fn CLI, then prints its URL."
  value       = "make image REGION=${var.region} NAMESPACE=${data.oci_objectstorage_namespace.this.namespace}"
}

output "dynamic_group_matching_rule" {
  description = "The matching rule, to compare with `python -m genai_handler.policies`."
  value       = var.pin_dynamic_group_to_function ? local.function_rule : local.compartment_rule
}

output "policy_statements" {
  description = "Every statement granted to the function and the gateway (for an administrator when create_iam = false)."
  value       = concat(local.function_statements, local.gateway_statements)
}
