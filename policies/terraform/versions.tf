terraform {
  # Resource Manager runs Terraform 1.5.x (OCI docs, "Supported Terraform Versions"); check
  # blocks need 1.5.
  required_version = ">= 1.5.0"

  required_providers {
    oci = {
      source  = "oracle/oci"
      version = ">= 6.0.0"
    }
  }
}

# Locally it reads ~/.oci/config like the oci CLI; Resource Manager authenticates for you.
provider "oci" {
  region              = var.region
  config_file_profile = local.profile
}

# Dynamic groups and policies can only be written in the tenancy's home region.
provider "oci" {
  alias               = "home"
  region              = local.home_region
  config_file_profile = local.profile
}

data "oci_identity_tenancy" "this" {
  tenancy_id = var.tenancy_ocid
}

data "oci_identity_regions" "all" {}

data "oci_objectstorage_namespace" "this" {
  compartment_id = var.tenancy_ocid
}
