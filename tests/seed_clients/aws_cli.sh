# Configure
aws configure set aws_access_key_id YOUR_ACCESS_KEY
aws configure set aws_secret_access_key YOUR_SECRET_KEY
aws configure set default.region YOUR_REGION
# List files
aws s3 ls s3://YOUR_BUCKET --endpoint-url YOUR_ENDPOINT
# Upload file
aws s3 cp myfile.txt s3://YOUR_BUCKET/myfile.txt --endpoint-url YOUR_ENDPOINT
# Download file
aws s3 cp s3://YOUR_BUCKET/myfile.txt ./myfile.txt --endpoint-url YOUR_ENDPOINT
