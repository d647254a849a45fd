return admit_reserve()
