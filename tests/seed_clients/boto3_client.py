import boto3
s3 = boto3.client('s3',
endpoint_url='YOUR_ENDPOINT',
aws_access_key_id='YOUR_ACCESS_KEY',
aws_secret_access_key='YOUR_SECRET_KEY',
region_name='YOUR_REGION')
# Upload
s3.upload_file('myfile.txt', 'YOUR_BUCKET', 'myfile.txt')
# Download
s3.download_file('YOUR_BUCKET', 'myfile.txt', './myfile.txt')
# List
response = s3.list_objects_v2(Bucket='YOUR_BUCKET')
for obj in response.get('Contents', []):
    print(obj['Key'], obj['Size'])
