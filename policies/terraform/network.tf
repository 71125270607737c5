# The network docs/deploy.md's prerequisites describe: a private subnet for the function with
# egress to the Generative AI endpoint, and a public subnet for the gateway open on TCP 443 only.

locals {
  network_count     = var.create_network ? 1 : 0
  service_gw_count  = var.create_network && var.function_egress == "SERVICE_GATEWAY" ? 1 : 0
  nat_gw_count      = var.create_network && var.function_egress == "NAT_GATEWAY" ? 1 : 0
  all_services      = one(data.oci_core_services.all.services)
  function_subnet   = var.create_network ? one(oci_core_subnet.function[*].id) : var.function_subnet_ocid
  gateway_subnet    = var.create_network ? one(oci_core_subnet.gateway[*].id) : var.gateway_subnet_ocid
  private_egress_to = var.function_egress == "SERVICE_GATEWAY" ? local.all_services.cidr_block : "0.0.0.0/0"
}

# "All <region> Services in Oracle Services Network": the service gateway target that carries
# Generative AI (OCI docs, "Access to Oracle Services: Service Gateway").
data "oci_core_services" "all" {
  filter {
    name   = "name"
    values = ["All .* Services In Oracle Services Network"]
    regex  = true
  }
}

resource "oci_core_vcn" "this" {
  count          = local.network_count
  compartment_id = var.compartment_ocid
  cidr_blocks    = [var.vcn_cidr]
  display_name   = "genai-vcn"
  dns_label      = "genai"
}

resource "oci_core_internet_gateway" "this" {
  count          = local.network_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-internet"
  enabled        = true
}

resource "oci_core_service_gateway" "this" {
  count          = local.service_gw_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-services"

  services {
    service_id = local.all_services.id
  }
}

resource "oci_core_nat_gateway" "this" {
  count          = local.nat_gw_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-nat"
}

resource "oci_core_route_table" "gateway" {
  count          = local.network_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-gateway-routes"

  route_rules {
    destination       = "0.0.0.0/0"
    destination_type  = "CIDR_BLOCK"
    network_entity_id = oci_core_internet_gateway.this[0].id
  }
}

resource "oci_core_route_table" "function" {
  count          = local.network_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-function-routes"

  route_rules {
    destination       = local.private_egress_to
    destination_type  = var.function_egress == "SERVICE_GATEWAY" ? "SERVICE_CIDR_BLOCK" : "CIDR_BLOCK"
    network_entity_id = var.function_egress == "SERVICE_GATEWAY" ? one(oci_core_service_gateway.this[*].id) : one(oci_core_nat_gateway.this[*].id)
  }
}

# Ingress: HTTPS only. Egress: the gateway fetches the issuer's JWKS and calls Functions.
resource "oci_core_security_list" "gateway" {
  count          = local.network_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-gateway-https"

  ingress_security_rules {
    protocol    = "6"
    source      = "0.0.0.0/0"
    source_type = "CIDR_BLOCK"
    description = "HTTPS to the API gateway"

    tcp_options {
      min = 443
      max = 443
    }
  }

  egress_security_rules {
    protocol         = "6"
    destination      = "0.0.0.0/0"
    destination_type = "CIDR_BLOCK"
    description      = "HTTPS out: the issuer's JWKS, OCI Functions"

    tcp_options {
      min = 443
      max = 443
    }
  }
}

# No ingress: nothing connects to the function's VNIC; it only calls out over HTTPS.
resource "oci_core_security_list" "function" {
  count          = local.network_count
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.this[0].id
  display_name   = "genai-function-egress"

  egress_security_rules {
    protocol         = "6"
    destination      = local.private_egress_to
    destination_type = var.function_egress == "SERVICE_GATEWAY" ? "SERVICE_CIDR_BLOCK" : "CIDR_BLOCK"
    description      = "HTTPS to OCI Generative AI"

    tcp_options {
      min = 443
      max = 443
    }
  }
}

resource "oci_core_subnet" "gateway" {
  count                      = local.network_count
  compartment_id             = var.compartment_ocid
  vcn_id                     = oci_core_vcn.this[0].id
  cidr_block                 = cidrsubnet(var.vcn_cidr, 8, 1)
  display_name               = "genai-gateway-public"
  dns_label                  = "gateway"
  prohibit_public_ip_on_vnic = false
  route_table_id             = oci_core_route_table.gateway[0].id
  security_list_ids          = [oci_core_security_list.gateway[0].id]
}

resource "oci_core_subnet" "function" {
  count                      = local.network_count
  compartment_id             = var.compartment_ocid
  vcn_id                     = oci_core_vcn.this[0].id
  cidr_block                 = cidrsubnet(var.vcn_cidr, 8, 2)
  display_name               = "genai-function-private"
  dns_label                  = "functions"
  prohibit_public_ip_on_vnic = true
  route_table_id             = oci_core_route_table.function[0].id
  security_list_ids          = [oci_core_security_list.function[0].id]
}
