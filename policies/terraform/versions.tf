terraform {
  # startswith() and one() need 1.3.
  required_version = ">= 1.3.0"

  required_providers {
    oci = {
      source  = "oracle/oci"
      version = ">= 5.0.0"
    }
  }
}

# Reads ~/.oci/config like the oci CLI. Drop this block when you call the folder as a
# child module and pass your own provider.
provider "oci" {
  region              = var.region
  config_file_profile = var.oci_config_profile
}
