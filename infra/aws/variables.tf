variable "region" {
  description = "AWS region of the bucket"
  type        = string
  default     = "eu-west-1"
}

variable "bucket_name" {
  description = "The shelfcast bucket: landing/, tables/, ledger/, mlflow/, models/, channels/, promotions/"
  type        = string
}

variable "trainer_principal_arns" {
  description = "Who may assume the trainer role: the nightly pipeline's ECS task role or CI runner role"
  type        = list(string)
}

variable "uploader_principal_arns" {
  description = "Who may assume the uploader role: the stores' point-of-sale export that delivers daily files"
  type        = list(string)
}

variable "store_trusted_service" {
  description = "The service store devices get temporary credentials from (AWS IoT credential provider, X.509 per device)"
  type        = string
  default     = "credentials.iot.amazonaws.com"
}

variable "landing_noncurrent_days" {
  description = "Days to keep overwritten or deleted versions of landing/ files (models/ and promotions/ keep every version)"
  type        = number
  default     = 90
}

variable "tags" {
  description = "Extra tags on every resource"
  type        = map(string)
  default     = {}
}
